"""EnvstoreFileSystem: the ``envstore`` protocol layered over any fsspec filesystem.

Content-free operations (listing, deletion, directories) are delegated explicitly, one method
at a time, in the style of fsspec's ``dirfs``; sizes are translated to plaintext sizes.
Every content path (open, cat, pipe, put, get, copy) goes through envstore's encrypting and
authenticating code.  Nothing is forwarded implicitly: a method envstore does not implement
raises instead of moving bytes.
"""

from __future__ import annotations

import io
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
from fsspec.callbacks import DEFAULT_CALLBACK, Callback
from fsspec.implementations.chained import ChainedFileSystem

from envstore.cipher import Encryptor
from envstore.errors import ConfigError, EnvstoreError, FormatError, NotEncryptedError
from envstore.file import (
    EnvstoreReadFile,
    EnvstoreTextWriter,
    EnvstoreWriteFile,
    Located,
    ObjectReader,
    naming,
    require_context,
)
from envstore.format import (
    CHUNK,
    HEADER_FIXED,
    MAX_CONTEXT_ITEMS,
    MAX_RECIPIENTS,
    PREFIX,
    Envelope,
    body_size,
    context_bytes,
    decode_header,
    encode_header,
    has_envelope,
    header_length,
    plain_size,
)
from envstore.keys import scheme_of
from envstore.keys.base import WrappedKey, canonical_context
from envstore.keys.local import default_key_path, default_key_uri
from envstore.keys.ring import KeyRing, parse_key_cache
from envstore.keys.uri import safe_uri
from envstore.options import split_options
from envstore.paths import check_inner_protocol, require_object
from envstore.stores import Head, Store, inner_filesystem, store_for
from envstore.stores.base import DEFAULT_READ_DEADLINE, entry_token, exact
from envstore.stores.failures import translating
from envstore.stores.local import TEMP_PREFIX
from envstore.stores.s3_deadline import DEFAULT_WRITE_DEADLINE

__all__ = ["EnvstoreFileSystem"]

_PLACEMENTS = ("auto", "metadata", "header")
_FIRST_READ = 4096  # first read of a header-placement object: header + body prefix
_LOCATE_CACHE = 1024
#: canonical context JSON bytes: its base64url field must fit format.MAX_FIELD characters
MAX_CONTEXT_BYTES = 3072


def _protocol_names(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _key_uri_list(value: object, name: str) -> list[str]:
    """The URIs of a ``key_uri``/``decrypt_key_uris`` option, each checked (scheme_of) before
    it is kept: a rejected URI (e.g. a pasted key) never reaches a repr or a pickle."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        for uri in value:
            scheme_of(uri)
        return list(value)
    raise ConfigError(f"{name} must be a key URI string or a list of them")


def _check_deadline(value: object, name: str) -> float | None:
    """``read_deadline`` / ``write_deadline``: seconds (a finite number > 0) or None (no
    deadline)."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value < float("inf")
    ):
        raise ConfigError(f"{name} must be a number of seconds > 0, or None")
    return float(value)


def _check_context(context: object) -> dict[str, str]:
    if context is None:
        return {}
    if (
        not isinstance(context, Mapping)
        or len(context) > MAX_CONTEXT_ITEMS
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in context.items())
    ):
        raise ConfigError(
            f"context must be a dict of str to str (at most {MAX_CONTEXT_ITEMS} entries)"
        )
    try:
        encoded = canonical_context(context)
    except UnicodeError:
        raise ConfigError("context keys and values must be valid Unicode text") from None
    if len(encoded) > MAX_CONTEXT_BYTES:
        raise ConfigError(f"context is {len(encoded)} bytes as JSON; at most {MAX_CONTEXT_BYTES}")
    return dict(context)


class EnvstoreFileSystem(ChainedFileSystem):
    """Client-side envelope encryption over any fsspec filesystem.

    Parameters (all plain, picklable data; key *references*, never key bytes):
    ``key_uri`` (str or list: every object's data key is wrapped for each),
    ``decrypt_key_uris`` (more keys accepted when reading), ``context`` (encryption context),
    ``placement`` (``auto``/``metadata``/``header``), ``kms_options`` (per key-URI scheme),
    ``key_cache`` (data-key cache limits, off by default), ``read_deadline`` (seconds one read
    request to a remote store may take, retries included; None: no limit), ``write_deadline``
    (S3: seconds per write request, retries included, + 1 s/MiB; then TimeoutError; None: no
    limit); ``target_protocol`` + ``target_options`` or ``fs`` name the inner filesystem.
    """

    protocol = "envstore"
    root_marker = ""
    _strip_tokenize_options = ("fo",)

    def __init__(
        self,
        target_protocol: str | None = None,
        target_options: Mapping[str, Any] | None = None,
        fs: fsspec.AbstractFileSystem | None = None,
        fo: str | None = None,
        key_uri: str | Sequence[str] | None = None,
        decrypt_key_uris: str | Sequence[str] | None = None,
        context: Mapping[str, str] | None = None,
        placement: str = "auto",
        kms_options: Mapping[str, Mapping[str, Any]] | None = None,
        key_cache: Mapping[str, float] | bool | None = None,
        write_deadline: float | None = DEFAULT_WRITE_DEADLINE,
        read_deadline: float | None = DEFAULT_READ_DEADLINE,
        **kwargs: Any,
    ) -> None:
        # -- options: envstore's, the base class's, consumers', the inner layer's (options.py)
        base_options, target_options = split_options(kwargs, target_protocol, target_options, fs)
        super().__init__(**base_options)
        if fs is None:
            fs = inner_filesystem(target_protocol or "file", target_options)
        elif target_protocol is not None:
            raise ConfigError("give either fs= or target_protocol=, not both")
        # duckdb routes a path to a registered filesystem by its protocols ("<p>://" prefix):
        # "envstore::s3" makes the chained URLs that unstrip_protocol returns its own too
        self.protocol = (  # type: ignore[assignment]
            "envstore",
            *(f"envstore::{p}" for p in _protocol_names(fs)),
        )
        # -- end of option handling
        if placement not in _PLACEMENTS:
            raise ConfigError(f"placement must be one of {_PLACEMENTS}, not {placement!r}")
        if kms_options is not None and not isinstance(kms_options, Mapping):
            raise ConfigError('kms_options must be a dict per scheme, e.g. {"awskms": {...}}')
        self.fs = fs
        self.store: Store = store_for(fs)
        self.store.read_deadline = _check_deadline(read_deadline, "read_deadline")
        if hasattr(self.store, "write_deadline"):  # S3: bounded write requests
            self.store.write_deadline = _check_deadline(write_deadline, "write_deadline")
        self.key_uris = _key_uri_list(key_uri, "key_uri")
        if len(self.key_uris) > MAX_RECIPIENTS:
            raise ConfigError(f"at most {MAX_RECIPIENTS} key URIs (recipients) per object")
        self.decrypt_key_uris = _key_uri_list(decrypt_key_uris, "decrypt_key_uris")
        self.context = _check_context(context)
        self.placement = placement
        self.kms_options = dict(kms_options or {})
        self.key_cache = parse_key_cache(key_cache)
        self._ring: KeyRing | None = None
        self._lock = threading.Lock()
        self._located: OrderedDict[tuple[str, tuple[Any, ...]], Located] = OrderedDict()
        # fsspec calls _strip_protocol on the class; on an instance, use the inner rules
        self._strip_protocol = self._strip_inner  # type: ignore[method-assign]

    # -- paths -------------------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: str) -> str:  # type: ignore[override]
        path = fsspec.utils.stringify_path(path)
        for prefix in ("envstore::", "envstore://"):
            if path.startswith(prefix):
                path = path[len(prefix) :]
        return path

    def _strip_inner(self, path: Any) -> Any:
        if isinstance(path, list):
            return [self._strip_inner(p) for p in path]
        outer = type(self)._strip_protocol(path)
        check_inner_protocol(outer, self.fs)  # never a silent wrong target (paths.py)
        return self.fs._strip_protocol(outer)

    def unstrip_protocol(self, name: str) -> str:
        return "envstore::" + self.fs.unstrip_protocol(name)

    def _parent(self, path: str) -> str:  # type: ignore[override]
        return self.fs._parent(path)

    def __repr__(self) -> str:
        return f"<EnvstoreFileSystem over {self.fs!r} keys={[safe_uri(u) for u in self.key_uris]}>"

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
                raise ConfigError(
                    "no key configured: pass key_uri (e.g. storage_options={'key_uri': "
                    "'local:///path/master.key'}), set FSSPEC_ENVSTORE_KEY_URI, or create the "
                    f"default key with: envstore keygen   (writes {default_key_path()})"
                )
            self._ring = KeyRing(key_uris, self.decrypt_key_uris, self.kms_options, self.key_cache)
        return self._ring

    # -- locating objects --------------------------------------------------------------------
    def _locate(self, path: str, head: Head | None = None) -> Located:
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
            self._located[token] = located
            while len(self._located) > _LOCATE_CACHE:
                self._located.popitem(last=False)
        return located

    def _parse(self, path: str, head: Head) -> Located:
        if head.fields is not None and has_envelope(head.fields):
            env = Envelope.from_fields(head.fields)
            placement, offset = "metadata", 0
        else:
            first = bytes(
                self.store.read_exact(path, 0, min(head.size, _FIRST_READ)) if head.size else b""
            )
            total = header_length(first[:HEADER_FIXED])
            if total is None:
                raise NotEncryptedError(f"{path} is not envstore-encrypted (no envelope)")
            need = min(total + PREFIX, head.size)
            if len(first) < need:
                first += bytes(self.store.read_exact(path, len(first), need))
            if len(first) < total:
                raise FormatError(f"{path}: envstore header is truncated")
            env = decode_header(bytes(first[:total]))
            placement, offset = "header", total
            if len(first) >= total + PREFIX:
                env.check_prefix(bytes(first[total : total + PREFIX]))
        plain = plain_size(head.size - offset)
        env.check_size(plain)
        return Located(path, env, placement, offset, head.size, plain, head.token)

    def _readable(self, path: str) -> Located:
        """Locate an object for reading its content: errors name the object, and a ``context``
        given to this filesystem must be contained in the object's (FORMAT.md, Reading)."""
        path = require_object(self._strip_protocol(path), path)
        with naming(path):
            located = self._locate(path)
            require_context(located, self.context)
        return located

    def _reader(self, path: str) -> ObjectReader:
        return ObjectReader(self.store, self.ring, self._readable(path))

    def _forget(self, path: str) -> None:
        self.store.forget(path)
        with self._lock:
            for token in [t for t in self._located if t[0] == path]:
                del self._located[token]

    # -- plaintext sizes in listings ---------------------------------------------------------
    def _plain_entry(self, entry: dict[str, Any], exact: bool = False) -> dict[str, Any]:
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
            loc = self._locate(entry["name"], head)
        except NotEncryptedError:
            out["encrypted"] = False
        except EnvstoreError as exc:
            out["encrypted"] = True
            out["error"] = str(exc)
        else:
            out["encrypted"] = True
            out["size"] = loc.plain_len
        return out

    # -- delegated, content-free operations --------------------------------------------------
    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        entries = self.fs.ls(self._strip_protocol(path), detail=True, **kwargs)
        entries = [
            self._plain_entry(e)
            for e in entries
            if not os.path.basename(e["name"].rstrip("/")).startswith(TEMP_PREFIX)
        ]
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._plain_entry(self.store.info(self._strip_protocol(path), **kwargs), exact=True)

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        found = self.fs.find(
            self._strip_protocol(path),
            maxdepth=maxdepth,
            withdirs=withdirs,
            detail=True,
            **kwargs,
        )
        found = {
            name: self._plain_entry(e)
            for name, e in found.items()
            if not os.path.basename(name.rstrip("/")).startswith(TEMP_PREFIX)
        }
        return found if detail else sorted(found)

    def exists(self, path: str, **kwargs: Any) -> bool:
        return self.fs.exists(self._strip_protocol(path), **kwargs)

    def lexists(self, path: str, **kwargs: Any) -> bool:
        return self.fs.lexists(self._strip_protocol(path), **kwargs)

    def isfile(self, path: str) -> bool:
        return self.store.isfile(self._strip_protocol(path))

    def isdir(self, path: str) -> bool:
        return self.fs.isdir(self._strip_protocol(path))

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Directories where the store has them; never a bucket (FileNotFoundError)."""
        path = require_object(self._strip_protocol(path), path)
        self.store.mkdir(path, create_parents, **kwargs)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = require_object(self._strip_protocol(path), path)
        if not exist_ok and self.exists(path):
            raise FileExistsError(path)
        self.store.makedirs(path)

    def rmdir(self, path: str) -> None:
        self.fs.rmdir(self._strip_protocol(path))

    def rm_file(self, path: str) -> None:
        path = self._strip_protocol(path)
        self.fs.rm_file(path)
        self._forget(path)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        path = self._strip_protocol(path)
        self.fs.rm(path, recursive=recursive, maxdepth=maxdepth)
        for p in path if isinstance(path, list) else [path]:
            self._forget(p)

    def modified(self, path: str) -> Any:
        return self.fs.modified(self._strip_protocol(path))

    def created(self, path: str) -> Any:
        return self.fs.created(self._strip_protocol(path))

    def invalidate_cache(self, path: str | None = None) -> None:
        self.fs.invalidate_cache(None if path is None else self._strip_protocol(path))
        self.store.forget(None if path is None else self._strip_protocol(path))
        with self._lock:
            self._located.clear()

    def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> str:
        raise NotImplementedError("a signed URL would hand out ciphertext; envstore has none")

    # -- reading -----------------------------------------------------------------------------
    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        path = self._strip_protocol(path)
        if not autocommit:
            raise NotImplementedError(
                "envstore writes commit on close; transactions are not supported"
            )
        if mode == "rb":
            return EnvstoreReadFile(
                self,
                path,
                self._reader(path),
                block_size=block_size,
                cache_type=kwargs.pop("cache_type", "none"),
                cache_options=cache_options,
            )
        if mode in ("wb", "xb"):
            if mode == "xb" and self.exists(path):
                raise FileExistsError(path)  # early; the commit checks again, atomically
            return self._writer(path, block_size=block_size, exclusive=mode == "xb")
        raise ValueError(f"envstore supports modes rb, wb, xb (and text r, w, x), not {mode!r}")

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "b" in mode:
            return super().open(path, mode, **kwargs)
        text = {k: kwargs.pop(k) for k in ("encoding", "errors", "newline") if k in kwargs}
        raw = super().open(path, mode.replace("t", "") + "b", **kwargs)
        wrapper = EnvstoreTextWriter if isinstance(raw, EnvstoreWriteFile) else io.TextIOWrapper
        return wrapper(raw, **text)

    @staticmethod
    def _range(start: int | None, end: int | None, size: int) -> tuple[int, int, bool]:
        rel = (start is not None and start < 0) or (end is not None and end < 0)
        s = 0 if start is None else (max(0, size + start) if start < 0 else start)
        e = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
        return s, e, rel

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        reader = self._reader(path)
        s, e, rel = self._range(start, end, reader.plain_len)
        if rel:
            reader.authenticate_end()
        return reader.read(s, e)

    def cat_ranges(
        self,
        paths: list[str],
        starts: Any,
        ends: Any,
        max_gap: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list[Any]:
        """Plaintext ranges; chunk ranges are merged per object and fetched in one batch."""
        if not isinstance(paths, list):
            raise TypeError("paths must be a list")
        starts = starts if isinstance(starts, list) else [starts] * len(paths)
        ends = ends if isinstance(ends, list) else [ends] * len(paths)
        if len(starts) != len(paths) or len(ends) != len(paths):
            raise ValueError("paths, starts and ends must have the same length")
        out: list[Any] = [None] * len(paths)
        readers: dict[str, ObjectReader | BaseException] = {}
        for p in paths:
            p = self._strip_protocol(p)
            if p not in readers:
                try:
                    readers[p] = self._reader(p)
                except Exception as exc:
                    if on_error != "return":
                        raise
                    readers[p] = exc
        # plan: per object, the chunk runs needed; merge overlapping or touching runs
        wanted: dict[str, list[tuple[int, int, int, int, int]]] = {}
        for i, (p, s, e) in enumerate(zip(paths, starts, ends, strict=True)):
            p = self._strip_protocol(p)
            r = readers[p]
            if isinstance(r, BaseException):
                out[i] = r
                continue
            s, e, rel = self._range(s, e, r.plain_len)
            try:
                if rel or s >= r.plain_len:
                    r.authenticate_end()
            except Exception as exc:
                if on_error != "return":
                    raise
                out[i] = exc
                continue
            if s >= e:
                out[i] = b""
                continue
            first, _last, ws, we = r.plan(s, e)
            wanted.setdefault(p, []).append((ws, we, first, i, s))
            out[i] = (s, e)
        runs: list[tuple[str, int, int, int, list[int]]] = []
        for p, items in wanted.items():
            items.sort()
            for ws, we, first, i, _s in items:
                if runs and runs[-1][0] == p and ws <= runs[-1][2]:
                    rp, rs, re_, rf, idx = runs[-1]
                    runs[-1] = (rp, rs, max(re_, we), rf, [*idx, i])
                else:
                    runs.append((p, ws, we, first, [i]))
        if runs:
            try:
                blobs = self.store.read_many(
                    [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs]
                )
            except Exception:  # read each run alone: each gets its own outcome (error)
                blobs = [None] * len(runs)  # type: ignore[list-item]
            for (p, ws, we, first, idx), blob in zip(runs, blobs, strict=True):
                reader = readers[p]
                assert isinstance(reader, ObjectReader)
                try:
                    if blob is None:
                        stored = reader.fetch(ws, we)
                    else:
                        stored = exact(blob, p, ws, we)
                    plain = reader.open_run(first, stored, ws)
                except Exception as exc:
                    if on_error != "return":
                        raise
                    for i in idx:
                        out[i] = exc
                    continue
                lo = first * CHUNK
                for i in idx:
                    s, e = out[i]
                    out[i] = bytes(plain[s - lo : e - lo]) if s < e else b""
        return out

    def get_file(
        self,
        rpath: str,
        lpath: Any,
        callback: Callback = DEFAULT_CALLBACK,
        outfile: Any = None,
        **kwargs: Any,
    ) -> None:
        """Decrypt to a local file (written aside and renamed: no partial file on failure)."""
        require_object(self._strip_protocol(rpath), rpath)
        if outfile is None and fsspec.utils.isfilelike(lpath):
            outfile = lpath
        if outfile is None and self.isdir(rpath):
            os.makedirs(lpath, exist_ok=True)
            return
        reader = self._reader(rpath)
        callback.set_size(reader.plain_len)
        step = 256 * CHUNK

        def pump(f: Any) -> None:
            for pos in range(0, reader.plain_len, step):
                data = reader.read(pos, pos + step)
                f.write(data)
                callback.relative_update(len(data))
            reader.authenticate_end()

        if outfile is not None:
            pump(outfile)
            return
        lpath = os.fspath(lpath)
        parent = os.path.dirname(os.path.abspath(lpath))
        os.makedirs(parent, exist_ok=True)
        temp = os.path.join(
            parent, f"{TEMP_PREFIX}{os.path.basename(lpath)}.{secrets.token_hex(6)}"
        )
        try:
            with open(temp, "wb") as f:
                pump(f)
            os.replace(temp, lpath)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise

    # -- writing -----------------------------------------------------------------------------
    def _writer(
        self,
        path: str,
        size: int | None = None,
        block_size: int | None = None,
        exclusive: bool = False,
    ) -> EnvstoreWriteFile:
        """A writer of ``path``; with ``size``, exactly that many bytes must be written (the
        object is discarded otherwise); with ``exclusive``, the commit fails with
        FileExistsError if an object exists at ``path`` by then."""
        path = require_object(self._strip_protocol(path), path)
        ring = self.ring
        key, recipients = ring.new_data_key(self.context, size)
        try:
            enc = Encryptor(key, context_bytes(self.context))
        finally:
            key[:] = bytes(len(key))
        env = Envelope(tuple(recipients), enc.prefix[:24], enc.prefix[24:], self.context, size)
        try:  # write only what readers accept (bounds of FORMAT.md)
            Envelope.from_fields(env.to_fields())
        except FormatError as exc:
            raise ConfigError(f"this envelope would not be readable: {exc}") from None
        metadata, header = self._place(env)
        hint = None if size is None else len(header or b"") + body_size(size)
        sink = self.store.open_sink(path, metadata, hint, exclusive)
        self._forget(path)
        return EnvstoreWriteFile(self, path, sink, enc, header, recipients, block_size, size)

    def _place(self, env: Envelope) -> tuple[dict[str, str] | None, bytes | None]:
        """Metadata fields or an in-object header for ``env``, per the placement option."""
        limit = self.store.metadata_limit
        if self.placement == "header" or (self.placement == "auto" and limit is None):
            return None, encode_header(env)
        if limit is None:
            raise ConfigError(
                f"placement='metadata' but {type(self.fs).__name__} has no user metadata"
            )
        fields = env.to_fields()
        used = self.store.metadata_size(fields)
        if used <= limit:
            return fields, None
        if self.placement == "auto":
            return None, encode_header(env)
        raise FormatError(
            f"envelope needs {used} bytes of user metadata, over the store's {limit}-byte "
            "limit; use placement='auto' or 'header', or fewer recipients"
        )

    def _written(self, path: str, recipients: list[WrappedKey], nbytes: int) -> None:
        """Called by a writer after a successful commit."""
        self._forget(path)
        self.fs.invalidate_cache(self.fs._parent(path))

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        if mode == "create" and self.exists(path):
            raise FileExistsError(path)  # early; the commit checks again, atomically
        with self._writer(path, size=len(value), exclusive=mode == "create") as f:
            f.write(value)

    def put_file(
        self,
        lpath: Any,
        rpath: str,
        callback: Callback = DEFAULT_CALLBACK,
        mode: str = "overwrite",
        **kwargs: Any,
    ) -> None:
        if mode == "create" and self.exists(rpath):
            raise FileExistsError(rpath)
        if os.path.isdir(lpath):
            self.makedirs(rpath, exist_ok=True)
            return
        with open(lpath, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            callback.set_size(size)
            parent = self._parent(self._strip_protocol(rpath))
            if parent:
                self.store.makedirs(parent)
            # the writer takes exactly ``size`` bytes: a source that grows or shrinks meanwhile
            # is an error before the commit, and the object already at rpath stays as it was
            with self._writer(
                rpath, size, kwargs.get("block_size"), exclusive=mode == "create"
            ) as dst:
                step = dst.blocksize
                while data := src.read(step):
                    dst.write(data)
                    callback.relative_update(len(data))

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        if truncate or not self.exists(path):
            self.pipe_file(path, b"")
        else:
            self.fs.touch(self._strip_protocol(path), truncate=False, **kwargs)

    # -- copies inside the store keep the envelope -------------------------------------------
    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        if self.isdir(path1):
            self.makedirs(path2, exist_ok=True)
            return
        self._locate(path1)  # only envstore objects are copied (fail closed)
        self.store.copy(path1, path2)
        self._forget(path2)

    def mv(
        self,
        path1: Any,
        path2: Any,
        recursive: bool = False,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(path1, str) and isinstance(path2, str) and not recursive:
            p1, p2 = self._strip_protocol(path1), self._strip_protocol(path2)
            if p1 != p2 and self.isfile(p1):
                if self.isdir(p2):
                    p2 = p2.rstrip("/") + "/" + p1.rstrip("/").rsplit("/", 1)[-1]
                self._locate(p1)
                self.store.move(p1, p2)
                self._forget(p1)
                self._forget(p2)
                return
        super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)

    # -- envelope access for tools (inspect, rewrap) -----------------------------------------
    def envelope(self, path: str) -> Located:
        """The parsed envelope and layout of one object (no key needed, nothing secret)."""
        path = self._strip_protocol(path)
        with naming(path):
            return self._locate(path)

    def set_recipients(
        self, path: str, recipients: Sequence[WrappedKey], expect: Located | None = None
    ) -> None:
        """Replace an object's recipients without touching its body (rewrap).

        The recipients must wrap the object's own data key: take it from
        ``self.ring.open_envelope`` (checked against the commitment), never from an unchecked
        unwrap, or a recipient planted from another object makes this destroy the object.
        With ``expect`` (what :meth:`envelope` returned when the data key was opened), the
        change applies only to that very version of the object: if another writer replaced it
        since, ConcurrentModificationError is raised and the object is left as it is.
        """
        path = self._strip_protocol(path)
        loc = self._locate(path) if expect is None else expect
        env = loc.envelope.with_recipients(recipients)
        try:  # write only what readers accept (bounds of FORMAT.md)
            Envelope.from_fields(env.to_fields())
        except FormatError as exc:
            raise ConfigError(f"this envelope would not be readable: {exc}") from None
        try:
            if loc.placement == "metadata":
                self.store.set_metadata(path, env.to_fields(), loc.token)
            else:
                self.store.rewrite_header(
                    path, encode_header(env), loc.body_offset, loc.stored_size, loc.token
                )
        finally:
            self._forget(path)


# -- backend failures -> builtin OSErrors ---------------------------------------------------
# Namespace operations go to the inner filesystem directly; a transport failure there (an
# unreachable endpoint, a reset) leaves as ConnectionError / TimeoutError / OSError with the
# original chained, as it does from the store adapters (envstore.stores.failures).
def _path_arg(fs: EnvstoreFileSystem, path: Any = "", *args: Any, **kwargs: Any) -> str:
    return str(path)


for _name in (
    "ls",
    "find",
    "exists",
    "lexists",
    "isdir",
    "mkdir",
    "makedirs",
    "rmdir",
    "rm_file",
    "rm",
    "modified",
    "created",
):
    setattr(EnvstoreFileSystem, _name, translating(_path_arg)(getattr(EnvstoreFileSystem, _name)))
