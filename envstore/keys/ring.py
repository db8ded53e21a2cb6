"""The key ring: which providers wrap new data keys and which may open existing ones.

Also holds the optional data-key cache (``key_cache`` option, off by default):

* writes of a known size reuse one data key across objects with the same encryption context
  until ``max_age`` seconds, ``max_objects`` objects or ``max_bytes`` plaintext bytes are
  reached (each object's size is reserved before the key is handed out; each object still gets
  a fresh salt, hence fresh chunk keys, from C2SP); streamed writes of unknown size always get
  a fresh data key;
* reads keep unwrapped data keys, keyed by the wrapped form and context, for ``max_age``
  seconds (at most ``max_entries``), so a dataset written under one cached data key costs one
  KMS ``Decrypt`` per process.

A ring lives in one process: it is never pickled (the filesystem pickles key URIs only).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from envstore.errors import ConfigError, IntegrityError, KeyAccessError
from envstore.keys import UNCACHED, get_provider, scheme_of
from envstore.keys.base import KeyProvider, WrappedKey, canonical_context
from envstore.keys.uri import safe_uri

if TYPE_CHECKING:
    from envstore.format import Envelope

_CACHE_LIMITS = {"max_age": float, "max_objects": int, "max_bytes": int, "max_entries": int}
_DEFAULT_CACHE = {
    "max_age": 300.0,
    "max_objects": 1 << 32,
    "max_bytes": 1 << 50,
    "max_entries": 1000,
}


def parse_key_cache(value: object) -> dict[str, float] | None:
    """Validate the ``key_cache`` option: ``None``/``False`` (off), ``True`` or a dict of limits."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(_DEFAULT_CACHE)
    if not isinstance(value, Mapping):
        raise ConfigError("key_cache must be a dict like {'max_age': 300, 'max_objects': 1000}")
    unknown = set(value) - set(_CACHE_LIMITS)
    if unknown:
        raise ConfigError(
            f"unknown key_cache limits {sorted(unknown)}; known: {sorted(_CACHE_LIMITS)}"
        )
    limits = dict(_DEFAULT_CACHE)
    for name, kind in _CACHE_LIMITS.items():
        if name in value:
            v = value[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise ConfigError(f"key_cache[{name!r}] must be a positive number")
            limits[name] = kind(v)
    return limits


@dataclass
class _WriteEntry:
    key: bytes = field(repr=False)  # never in a repr (logs, debuggers, error reports)
    recipients: tuple[WrappedKey, ...]
    created: float
    objects: int = 0
    nbytes: int = 0


@dataclass
class _ReadEntry:
    key: bytes = field(repr=False)
    created: float


class KeyRing:
    """Providers for ``key_uris`` (new objects, tried first on read) and ``decrypt_key_uris``."""

    def __init__(
        self,
        key_uris: Sequence[str],
        decrypt_key_uris: Sequence[str] = (),
        kms_options: Mapping[str, Mapping[str, object]] | None = None,
        key_cache: Mapping[str, float] | None = None,
    ) -> None:
        self.key_uris = list(key_uris)
        self.decrypt_key_uris = [u for u in decrypt_key_uris if u not in self.key_uris]
        self.kms_options = kms_options or {}
        self.cache = parse_key_cache(key_cache)
        #: URI -> scheme: each URI parsed once (the filesystem checked them when it was made)
        self._schemes: dict[str, str] = {}
        #: the providers get_provider does not keep per process (local keys), for this ring
        self._own: dict[str, KeyProvider] = {}
        self._lock = threading.Lock()
        self._writes: dict[bytes, _WriteEntry] = {}
        self._reads: OrderedDict[tuple[bytes, tuple[str, ...]], _ReadEntry] = OrderedDict()

    def __repr__(self) -> str:
        keys = [safe_uri(u) for u in self.key_uris]
        decrypt = [safe_uri(u) for u in self.decrypt_key_uris]
        return f"<KeyRing keys={keys} decrypt={decrypt}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("KeyRing must not be pickled")

    def provider(self, uri: str) -> KeyProvider:
        """The provider of ``uri`` (one of this ring's, or another such as rewrap's new keys)."""
        scheme = self._schemes.get(uri)
        if scheme is None:
            scheme = self._schemes[uri] = scheme_of(uri)
        if scheme not in UNCACHED:
            return get_provider(uri, self.kms_options, scheme)  # cached per process
        p = self._own.get(uri)
        if p is None:
            p = self._own[uri] = get_provider(uri, self.kms_options, scheme)
        return p

    # -- writing ----------------------------------------------------------------------------
    def new_data_key(
        self, context: Mapping[str, str], size: int | None = None
    ) -> tuple[bytearray, list[WrappedKey]]:
        """A data key for one new object of ``size`` plaintext bytes and its recipients (one
        per ``key_uris`` entry).

        With the key cache on, a cached key is handed out only if ``size`` still fits its
        ``max_bytes`` budget, and the size is reserved (under the lock) before it is: however
        many writers run at once, no cached key covers more than ``max_bytes``.  A write of
        unknown size (``size`` None: a streamed ``open(..., "wb")``) could overrun any budget:
        it always gets a fresh data key, which is not cached.
        """
        if not self.key_uris:
            raise ConfigError("no key_uri configured for writing")
        ctx = canonical_context(context)
        if self.cache is not None and size is not None:
            with self._lock:
                entry = self._writes.get(ctx)
                if entry is not None and self._fits(entry, size):
                    entry.objects += 1
                    entry.nbytes += size
                    return bytearray(entry.key), list(entry.recipients)
        first, *rest = [self.provider(u) for u in self.key_uris]
        key, wrapped = first.generate_data_key(context)
        recipients = [wrapped] + [p.wrap(key, context) for p in rest]
        if self.cache is not None and size is not None:
            fresh = _WriteEntry(bytes(key), tuple(recipients), time.monotonic(), 1, size)
            with self._lock:
                self._writes[ctx] = fresh
        return key, recipients

    def _fits(self, entry: _WriteEntry, size: int) -> bool:
        """Whether ``entry``'s key may encrypt one more object of ``size`` bytes."""
        c = self.cache
        assert c is not None
        return (
            time.monotonic() - entry.created < c["max_age"]
            and entry.objects < c["max_objects"]
            and entry.nbytes + size <= c["max_bytes"]
        )

    # -- reading ----------------------------------------------------------------------------
    def open_envelope(self, envelope: Envelope) -> bytearray:
        """The data key of the object ``envelope`` describes, checked against its commitment.

        Every unwrapped candidate must match the C2SP commitment of the object (derived from
        the key, the salt and the context): a recipient copied from another object under the
        same key and context unwraps fine, but to another object's data key. Such a candidate
        is wiped and the next one is tried. Readers and rewrap get data keys only from here,
        so no caller ever decrypts with, or re-wraps, a key the object does not commit to.
        """
        from envstore.cipher import commits_to
        from envstore.format import context_bytes

        ctx = context_bytes(envelope.context)

        def commits(key: bytearray) -> bool:
            return commits_to(key, envelope.salt, ctx, envelope.commitment)

        return self.open_data_key(envelope.recipients, envelope.context, accept=commits)

    def open_data_key(
        self,
        recipients: Sequence[WrappedKey],
        context: Mapping[str, str],
        accept: Callable[[bytearray], bool] | None = None,
    ) -> bytearray:
        """Unwrap the data key with the first configured provider that can; KeyAccessError else.

        With ``accept``, a candidate it rejects does not count (see :meth:`open_envelope`,
        which every object read uses): the search goes on, and if no candidate is accepted
        the error is IntegrityError.
        """
        if not recipients:
            raise KeyAccessError("object has no recipients")
        token = None
        if self.cache is not None:
            token = (canonical_context(context), tuple(r.encode() for r in recipients))
            cached: bytearray | None = None
            with self._lock:
                hit = self._reads.get(token)
                if hit is not None and time.monotonic() - hit.created < self.cache["max_age"]:
                    self._reads.move_to_end(token)
                    cached = bytearray(hit.key)
            if cached is not None:
                if accept is None or accept(cached):  # a cached key is a candidate too
                    return cached
                cached[:] = bytes(len(cached))
        key = self._search(recipients, context, accept)
        if token is not None:
            self._remember(token, key)
        return key

    def _search(
        self,
        recipients: Sequence[WrappedKey],
        context: Mapping[str, str],
        accept: Callable[[bytearray], bool] | None,
    ) -> bytearray:
        """Keys in configured order, for each the recipients in envelope order (FORMAT.md)."""
        errors: list[str] = []
        altered: list[str] = []
        tried = False
        for uri in self.key_uris + self.decrypt_key_uris:
            provider = self.provider(uri)
            for n, wrapped in enumerate(recipients, 1):
                if not provider.matches(wrapped):
                    continue
                tried = True
                try:
                    key = provider.unwrap(wrapped, context)
                except KeyAccessError as exc:
                    errors.append(f"{safe_uri(uri)}: {exc}")
                    continue
                except IntegrityError as exc:  # another recipient may still be intact
                    altered.append(str(exc))
                    continue
                if accept is not None and not accept(key):
                    key[:] = bytes(len(key))
                    altered.append(
                        f"recipient {n} ({wrapped.provider}:{wrapped.key_id}) unwraps to a key "
                        "that does not match the object's key commitment (copied from another "
                        "object?)"
                    )
                    continue
                return key
        wrapped_for = ", ".join(f"{r.provider}:{r.key_id}" for r in recipients)
        if not tried:
            configured = ", ".join(safe_uri(u) for u in self.key_uris + self.decrypt_key_uris)
            configured = configured or "none"
            raise KeyAccessError(
                f"object is wrapped for {wrapped_for}; none of the configured keys "
                f"({configured}) is one of them (add it to key_uri or decrypt_key_uris)"
            )
        if altered:
            raise IntegrityError("; ".join(altered))
        raise KeyAccessError("; ".join(errors))

    def _remember(self, token: tuple[bytes, tuple[str, ...]], key: bytearray) -> None:
        assert self.cache is not None
        with self._lock:
            self._reads[token] = _ReadEntry(bytes(key), time.monotonic())
            self._reads.move_to_end(token)
            while len(self._reads) > self.cache["max_entries"]:
                self._reads.popitem(last=False)
