"""The key-provider interface every provider implements (local, env, Alibaba KMS, AWS KMS).

A provider turns a *key URI* into two operations, both bound to the encryption context:

* ``generate_data_key(context)`` -> ``(plaintext data key, WrappedKey)``
* ``unwrap(wrapped, context)`` -> plaintext data key

plus ``wrap(data_key, context)`` to add a recipient to an existing data key (several
recipients, rewrap).  Plaintext data keys are ``bytearray`` so callers can wipe them; they never
appear in reprs, exceptions or pickles.  Providers hold clients and credentials, never pickle,
and are created once per process per (URI, options) by :func:`envstore.keys.get_provider`.
"""

from __future__ import annotations

import json
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NoReturn

from envstore.errors import FormatError

DATA_KEY_BYTES = 32

# Provider names and key ids are URL-quoted inside a recipient field; params are a query string.
_MAX_BLOB = 4096


def canonical_context(context: Mapping[str, str]) -> bytes:
    """Canonical JSON of an encryption context (sorted keys, no spaces, UTF-8)."""
    return json.dumps(
        dict(context), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


@dataclass(frozen=True)
class WrappedKey:
    """One recipient of an object's data key: what a provider needs to unwrap it.

    ``provider`` is the provider family (``local``, ``alikms``, ``alikms-instance``,
    ``awskms``), ``key_id`` the wrapping key's identifier as the provider reports it,
    ``blob`` the wrapped data key and ``params`` what the KMS needs back (e.g. IV, algorithm).
    None of it is secret.
    """

    provider: str
    key_id: str
    blob: bytes
    params: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        """ASCII form stored in an ``envstore-key-N`` metadata field."""
        import base64

        parts = [
            urllib.parse.quote(self.provider, safe=""),
            urllib.parse.quote(self.key_id, safe=""),
            base64.b64encode(self.blob).decode("ascii"),
        ]
        if self.params:
            parts.append(urllib.parse.urlencode(sorted(self.params.items())))
        return ";".join(parts)

    @classmethod
    def decode(cls, text: str) -> WrappedKey:
        import base64
        import binascii

        parts = text.split(";")
        if len(parts) not in (3, 4) or not parts[0] or not parts[2]:
            raise FormatError("malformed recipient field")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError):
            raise FormatError("recipient blob is not base64") from None
        if len(blob) > _MAX_BLOB:
            raise FormatError("recipient blob too long")
        params: dict[str, str] = {}
        if len(parts) == 4:
            try:
                pairs = urllib.parse.parse_qsl(
                    parts[3], keep_blank_values=True, strict_parsing=True
                )
            except ValueError:
                raise FormatError("malformed recipient parameters") from None
            params = dict(pairs)
            if len(params) != len(pairs):
                raise FormatError("duplicate recipient parameter")
        return cls(
            provider=urllib.parse.unquote(parts[0]),
            key_id=urllib.parse.unquote(parts[1]),
            blob=blob,
            params=params,
        )


class KeyProvider(ABC):
    """Base class of key providers. Subclasses set ``scheme`` (the URI scheme they handle)."""

    #: URI scheme(s) handled, e.g. ``("alikms",)``
    schemes: tuple[str, ...] = ()
    #: provider family written into WrappedKey.provider
    family: str = ""

    def __init__(self, uri: str, options: Mapping[str, object] | None = None) -> None:
        self.uri = uri
        self.options = dict(options or {})

    def __repr__(self) -> str:
        from envstore.keys.uri import safe_uri

        return f"<{type(self).__name__} {safe_uri(self.uri)}>"

    def __reduce__(self) -> NoReturn:  # providers hold clients/keys: never pickle them
        raise TypeError(f"{type(self).__name__} must not be pickled; pickle the key URI")

    @abstractmethod
    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytearray, WrappedKey]:
        """A fresh 32-byte data key and its wrapped form (KMS GenerateDataKey)."""

    @abstractmethod
    def wrap(self, data_key: bytes | bytearray, context: Mapping[str, str]) -> WrappedKey:
        """Wrap an existing data key (KMS Encrypt): adds a recipient, used by rewrap."""

    @abstractmethod
    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytearray:
        """The plaintext data key of ``wrapped`` (KMS Decrypt). KeyAccessError on failure."""

    def matches(self, wrapped: WrappedKey) -> bool:
        """Whether this provider may be able to open ``wrapped`` (cheap, no I/O).

        The default compares the provider family only: a KMS reports key ids in its own form
        (an alias in the URI, a key id or ARN in the response), so the KMS decides.
        """
        return wrapped.provider == self.family
