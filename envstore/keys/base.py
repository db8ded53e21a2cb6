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

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import NoReturn

from envstore.format import WrappedKey, canonical_context

__all__ = ["DATA_KEY_BYTES", "KeyProvider", "WrappedKey", "canonical_context"]

DATA_KEY_BYTES = 32


class KeyProvider(ABC):
    """Base class of key providers. Subclasses set ``family``."""

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
