"""The object layer: envstore objects over a store adapter, one place for each concern.

* **locating**: find an object's envelope (user metadata or in-object header), parse it,
  cache the result per change token;
* **placement**: metadata fields or a header for a new envelope, per the ``placement`` option
  and the store's metadata limit;
* **keys**: the key ring (created on first use) that wraps new data keys and opens envelopes;
* **recipient changes** (rewrap): only with a key checked against the commitment, only onto
  the very version whose key was opened (conditional copy / atomic exchange in the store);
* **cache invalidation**: :meth:`Objects.forget` is the one call made after anything changed
  an object (write commit, copy, move, removal, recipient change).

The filesystem (``fs.py``) is a thin fsspec front over this; the CLI, ``transfer`` and
``migration`` use the public methods below.  Paths are inner paths (protocol stripped).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from fsspec import AbstractFileSystem

from envstore import errors
from envstore.cipher import Encryptor
from envstore.file import EnvstoreWriteFile, Located, ObjectReader, naming
from envstore.format import (
    HEADER_FIXED,
    PREFIX,
    Envelope,
    WrappedKey,
    body_size,
    context_bytes,
    decode_header,
    encode_header,
    has_envelope,
    header_length,
    plain_size,
)
from envstore.keys.local import default_key_path, default_key_uri
from envstore.keys.ring import KeyRing
from envstore.paths import require_object
from envstore.stores import Head, Store
from envstore.stores.base import entry_token

__all__ = ["Objects", "describe_envelope"]

_FIRST_READ = 4096  # first read of a header-placement object: header + body prefix
_WHOLE_READ = 32 << 10  # header-placement objects up to this size are read whole at once
_LOCATE_CACHE = 1024


def describe_envelope(loc: Located) -> dict[str, Any]:
    """An object's envelope as a plain dict (``envstore inspect``): nothing secret, not even
    the wrapped data keys."""
    env = loc.envelope
    return {
        "path": loc.path,
        "format_version": env.version,
        "suite": env.suite,
        "placement": loc.placement,
        "plaintext_size": loc.plain_len,
        "stored_size": loc.stored_size,
        "size_field": env.size,
        "context": dict(env.context),
        "recipients": [
            {"provider": r.provider, "key_id": r.key_id, "params": dict(r.params)}
            for r in env.recipients
        ],
    }


def _ident(wrapped: WrappedKey) -> tuple[str, str]:
    return wrapped.provider, wrapped.key_id


class Objects:
    """envstore objects of one filesystem: ``fs`` is the inner filesystem, ``store`` its
    adapter; the key options are those of :class:`~envstore.fs.EnvstoreFileSystem`."""

    def __init__(
        self,
        fs: AbstractFileSystem,
        store: Store,
        *,
        key_uris: Sequence[str],
        decrypt_key_uris: Sequence[str],
        kms_options: Mapping[str, Mapping[str, Any]],
        key_cache: Mapping[str, float] | None,
        context: Mapping[str, str],
        placement: str,
    ) -> None:
        self.fs = fs
        self.store = store
        self.key_uris = list(key_uris)
        self.decrypt_key_uris = list(decrypt_key_uris)
        self.kms_options = kms_options
        self.key_cache = key_cache
        self.context = context
        self.placement = placement
        self._ring: KeyRing | None = None
        self._lock = threading.Lock()
        self._located: OrderedDict[tuple[str, tuple[Any, ...]], Located] = OrderedDict()

    # -- keys --------------------------------------------------------------------------------
    @property
    def ring(self) -> KeyRing:
        """The process-local key ring (created on first use, never pickled)."""
        if self._ring is None:
            key_uris = self.key_uris
            if not key_uris:
                env = os.environ.get("FSSPEC_ENVSTORE_KEY_URI")
                if env:
                    key_uris = [env]
                elif default_key_path().exists():
                    key_uris = [default_key_uri()]
            if not key_uris and not self.decrypt_key_uris:
                raise errors.ConfigError(
                    "no key configured: pass key_uri (e.g. storage_options={'key_uri': "
                    "'local:///path/master.key'}), set FSSPEC_ENVSTORE_KEY_URI, or create the "
                    f"default key with: envstore keygen   (writes {default_key_path()})"
                )
            self._ring = KeyRing(key_uris, self.decrypt_key_uris, self.kms_options, self.key_cache)
        return self._ring

    # -- locating ----------------------------------------------------------------------------
    def locate(self, path: str, head: Head | None = None) -> Located:
        """Find and parse an object's envelope (no key needed); cached per change token."""
        if head is None:
            head = self.store.head(path)
        token = (path, head.token)
        with self._lock:
            hit = self._located.get(token)
            if hit is not None and head.token:
                self._located.move_to_end(token)
                return hit
        located = self._parse(path, head)
        with self._lock:
            self._located[token] = replace(located, stored=None)  # no object bytes kept
            while len(self._located) > _LOCATE_CACHE:
                self._located.popitem(last=False)
        return located

    def _parse(self, path: str, head: Head) -> Located:
        if head.fields is not None and has_envelope(head.fields):
            env = Envelope.from_fields(head.fields)
            placement, offset, first = "metadata", 0, b""
        else:
            env, offset, first = self._parse_header(path, head.size)
            placement = "header"
        plain = plain_size(head.size - offset)
        env.check_size(plain)
        whole = first if 0 < len(first) == head.size else None  # metadata placement: b""
        return Located(path, env, placement, offset, head.size, plain, head.token, whole)

    def _parse_header(self, path: str, size: int) -> tuple[Envelope, int, bytes]:
        """The envelope in the object's header, the header's length and the bytes read (the
        whole object when it is at most _WHOLE_READ bytes: one read serves its reader too)."""
        n = size if size <= _WHOLE_READ else _FIRST_READ
        first = bytes(self.store.read_exact(path, 0, n) if size else b"")
        total = header_length(first[:HEADER_FIXED])
        if total is None:
            raise errors.NotEncryptedError(f"{path} is not envstore-encrypted (no envelope)")
        need = min(total + PREFIX, size)
        if len(first) < need:
            first += bytes(self.store.read_exact(path, len(first), need))
        if len(first) < total:
            raise errors.FormatError(f"{path}: envstore header is truncated")
        env = decode_header(bytes(first[:total]))
        if len(first) >= total + PREFIX:
            env.check_prefix(bytes(first[total : total + PREFIX]))
        return env, total, first

    def envelope(self, path: str) -> Located:
        """The parsed envelope and layout of one object (no key needed, nothing secret);
        errors name the object."""
        with naming(path):
            return self.locate(path)

    def readable(self, path: str, shown: Any = None) -> Located:
        """Locate an object for reading its content: errors name the object, and a ``context``
        given to this filesystem must be contained in the object's (FORMAT.md, Reading)."""
        path = require_object(path, path if shown is None else shown)
        with naming(path):
            located = self.locate(path)
            require_context(located, self.context)
        return located

    def reader(self, path: str, shown: Any = None) -> ObjectReader:
        """Random-access plaintext of one object; every chunk authenticated before release."""
        return ObjectReader(self.store, self.ring, self.readable(path, shown))

    def verify(self, path: str) -> int:
        """Authenticate every chunk of one object, final chunk included (plaintext dropped);
        its plaintext size."""
        reader = self.reader(path)
        for _ in reader.stream():
            pass
        return reader.plain_len

    # -- listings ----------------------------------------------------------------------------
    def plain_entry(self, entry: dict[str, Any], exact: bool = False) -> dict[str, Any]:
        """A file entry with its plaintext ``size``, ``stored_size`` and ``encrypted``: True or
        False where the store's entry or one read tells, None where a listing without metadata
        (S3, OSS) gave the size and ``exact`` is off (no request is made to find out)."""
        if entry.get("type") != "file":
            return entry
        out = dict(entry)
        out["stored_size"] = entry.get("size")
        head: Head | None = Head(int(entry["size"]), None, entry_token(entry))
        size = self.store.listing_plain_size(entry)
        if size is not None:
            known = self.store.listing_encrypted(entry)
            if known is not None or not exact:
                out["size"] = size
                out["encrypted"] = known
                return out
            head = None  # the metadata (a HEAD, usually cached) tells
        try:
            loc = self.locate(entry["name"], head)
        except errors.NotEncryptedError:
            out["encrypted"] = False
        except errors.EnvstoreError as exc:
            out["encrypted"] = True
            out["error"] = str(exc)
        else:
            out["encrypted"] = True
            out["size"] = loc.plain_len
        return out

    # -- writing -----------------------------------------------------------------------------
    def writer(
        self,
        path: str,
        size: int | None = None,
        block_size: int | None = None,
        exclusive: bool = False,
    ) -> EnvstoreWriteFile:
        """A writer of ``path``; with ``size``, exactly that many bytes must be written (the
        object is discarded otherwise); with ``exclusive``, the commit fails with
        FileExistsError if an object exists at ``path`` by then."""
        path = require_object(path, path)
        key, recipients = self.ring.new_data_key(self.context, size)
        try:
            enc = Encryptor(key, context_bytes(self.context))
        finally:
            key[:] = bytes(len(key))
        env = self._readable_envelope(
            Envelope(tuple(recipients), enc.prefix[:24], enc.prefix[24:], self.context, size)
        )
        metadata, header = self.place(env)
        hint = None if size is None else len(header or b"") + body_size(size)
        sink = self.store.open_sink(path, metadata, hint, exclusive)
        return EnvstoreWriteFile(self.forget, path, sink, enc, header, block_size, size)

    @staticmethod
    def _readable_envelope(env: Envelope) -> Envelope:
        """``env`` if readers accept it (the bounds of FORMAT.md), else errors.ConfigError."""
        try:
            Envelope.from_fields(env.to_fields())
        except errors.FormatError as exc:
            raise errors.ConfigError(f"this envelope would not be readable: {exc}") from None
        return env

    def place(self, env: Envelope) -> tuple[dict[str, str] | None, bytes | None]:
        """Metadata fields or an in-object header for ``env``, per the placement option."""
        limit = self.store.metadata_limit
        if self.placement == "header" or (self.placement == "auto" and limit is None):
            return None, encode_header(env)
        if limit is None:
            raise errors.ConfigError(
                f"placement='metadata' but {type(self.fs).__name__} has no user metadata"
            )
        fields = env.to_fields()
        used = self.store.metadata_size(fields)
        if used <= limit:
            return fields, None
        if self.placement == "auto":
            return None, encode_header(env)
        raise errors.FormatError(
            f"envelope needs {used} bytes of user metadata, over the store's {limit}-byte "
            "limit; use placement='auto' or 'header', or fewer recipients"
        )

    # -- changes inside the store ------------------------------------------------------------
    def forget(self, path: str) -> None:
        """The one invalidation after ``path`` changed: the adapter's cache (HEAD), located
        envelopes and the inner filesystem's listing of its parent."""
        self.store.forget(path)
        with self._lock:
            for token in [t for t in self._located if t[0] == path]:
                del self._located[token]
        self.fs.invalidate_cache(self.fs._parent(path))

    def forget_all(self, path: str | None = None) -> None:
        """``invalidate_cache``: everything cached under ``path`` (all if None)."""
        self.fs.invalidate_cache(path)
        self.store.forget(path)
        with self._lock:
            self._located.clear()

    def copy(self, src: str, dst: str) -> None:
        """Copy a stored object with its envelope; only envstore objects (fail closed)."""
        self.locate(src)
        try:
            self.store.copy(src, dst)
        finally:
            self.forget(dst)

    def move(self, src: str, dst: str) -> None:
        self.locate(src)
        try:
            self.store.move(src, dst)
        finally:
            self.forget(src)
            self.forget(dst)

    def set_recipients(
        self, path: str, recipients: Sequence[WrappedKey], expect: Located | None = None
    ) -> None:
        """Replace an object's recipients without touching its body (rewrap).

        The recipients must wrap the object's own data key: take it from
        ``ring.open_envelope`` (checked against the commitment), never from an unchecked
        unwrap, or a recipient planted from another object makes this destroy the object.
        With ``expect`` (what :meth:`envelope` returned when the data key was opened), the
        change applies only to that very version of the object: if another writer replaced it
        since, ConcurrentModificationError is raised and the object is left as it is.
        """
        loc = self.locate(path) if expect is None else expect
        env = self._readable_envelope(loc.envelope.with_recipients(recipients))
        try:
            if loc.placement == "metadata":
                self.store.set_metadata(path, env.to_fields(), loc.token)
            else:
                self.store.rewrite_header(
                    path, encode_header(env), loc.body_offset, loc.stored_size, loc.token
                )
        finally:
            self.forget(path)

    def rewrap(
        self,
        path: str,
        new_key_uris: Iterable[str],
        replace: bool = True,
        fallback: KeyRing | None = None,
    ) -> bool:
        """Wrap one object's data key for ``new_key_uris`` (replacing its recipients, or
        adding those not present); whether the envelope changed. The data key comes from this
        ring, else ``fallback`` (keys an earlier run already wrapped for), and is checked
        against the commitment; the change applies only to the version that was read."""
        loc = self.readable(path)  # a read context given is checked
        env = loc.envelope
        key = self._open_for_rewrap(env, fallback)
        try:
            wrapped = [self.ring.provider(uri).wrap(key, env.context) for uri in new_key_uris]
        finally:
            key[:] = bytes(len(key))
        if replace:
            recipients = wrapped
            unchanged = sorted(map(_ident, env.recipients)) == sorted(map(_ident, wrapped))
        else:
            have = {_ident(r) for r in env.recipients}
            extra = [w for w in wrapped if _ident(w) not in have]
            recipients = [*env.recipients, *extra]
            unchanged = not extra
        if not unchanged:  # only onto the very version whose key was opened
            self.set_recipients(path, recipients, expect=loc)
        return not unchanged

    def _open_for_rewrap(self, env: Envelope, fallback: KeyRing | None) -> bytearray:
        # only a key matching the object's commitment is ever wrapped (a planted recipient
        # would otherwise destroy the object for every key)
        try:
            return self.ring.open_envelope(env)
        except errors.KeyAccessError as first:
            if fallback is None:
                raise
            try:
                return fallback.open_envelope(env)
            except errors.EnvstoreError:
                raise first from None


def require_context(located: Located, required: Mapping[str, str]) -> None:
    """A read ``context`` is a check (as AWS ESDK's required encryption context): the object's
    stored context must hold every given pair. errors.IntegrityError naming the object and the first
    differing context *key*; values are never shown (they may identify a tenant or a person,
    and error messages travel to logs and dashboards)."""
    stored = located.envelope.context
    for k in sorted(required):
        if k not in stored:
            raise errors.IntegrityError(
                f"{located.path}: encryption context key {k!r} is required by the reader "
                "but missing from the object's context"
            )
        if stored[k] != required[k]:
            raise errors.IntegrityError(
                f"{located.path}: encryption context key {k!r} has a different value in the "
                "object than the reader requires"
            )
