"""Legacy sources: plain ``oss://`` and ``s3://`` URLs, with the user metadata legacy envelopes
live in.  ``oss://`` goes through envstore's own oss2 filesystem (never a global ``oss``
protocol), ``s3://`` through s3fs; each takes its options under its protocol name."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envstore.errors import ConfigError
from envstore.stores import inner_filesystem

PROTOCOLS = ("oss", "s3", "s3a")
_MAX_SMALL = 64 * 1024


@dataclass(frozen=True)
class SourceHead:
    size: int
    meta: dict[str, str]  # user metadata: lowercase names without the x-oss-meta-/x-amz-meta-
    token: tuple[Any, ...]  # changes when the object is replaced
    crc64: str | None = None  # OSS: x-oss-hash-crc64ecma of the stored bytes


def split_url(url: str) -> tuple[str, str]:
    """``(protocol, bucket/key)`` of a plain store URL."""
    if not isinstance(url, str) or "://" not in url or "::" in url:
        raise ConfigError(
            f"migrate reads plain store URLs (oss://bucket/prefix, s3://bucket/prefix), not {url!r}"
        )
    protocol, _, path = url.partition("://")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"migrate reads oss:// and s3:// sources, not {protocol}://")
    return protocol, path.strip("/")


class _QuietRawGets(logging.Filter):
    """oss2 warns on every plain GET of a CryptoBucket object ("Using Bucket to get an encrypted
    object will return raw data"): reading the raw bytes is exactly what migration does."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Using Bucket to get an encrypted object")


_QUIET = _QuietRawGets()


class Source:
    """A legacy store: heads with user metadata, ranged reads, listings, removals."""

    def __init__(self, url: str, options: Mapping[str, Any]) -> None:
        self.protocol, self.root = split_url(url)
        self.options = dict(options.get(self.protocol) or {})
        self.fs = inner_filesystem(self.protocol, self.options)
        if self.protocol == "oss":
            models = logging.getLogger("oss2.models")
            if _QUIET not in models.filters:
                models.addFilter(_QUIET)

    def __repr__(self) -> str:
        return f"<legacy source {self.protocol}://{self.root}>"

    def _split(self, path: str) -> tuple[str, str]:
        parts = self.fs.split_path(path)
        return parts[0], parts[1]

    def head(self, path: str) -> SourceHead | None:
        """The object's size, user metadata and change token; None if there is none."""
        bucket, key = self._split(path)
        if not key:
            return None
        if self.protocol == "oss":
            return self._oss_head(bucket, key, path)
        try:
            out = self.fs.call_s3("head_object", Bucket=bucket, Key=key)
        except FileNotFoundError:
            return None
        meta = {str(k).lower(): str(v) for k, v in (out.get("Metadata") or {}).items()}
        token = (out.get("ETag"), out.get("LastModified"), out.get("VersionId"))
        return SourceHead(int(out["ContentLength"]), meta, token)

    def _oss_head(self, bucket: str, key: str, path: str) -> SourceHead | None:
        import oss2

        from envstore.stores.oss import META_PREFIX, translate

        try:
            result = self.fs.bucket(bucket).head_object(key)
        except oss2.exceptions.NotFound:
            return None
        except oss2.exceptions.OssError as exc:
            raise translate(exc, path) from exc
        meta = {
            k.lower()[len(META_PREFIX) :]: v
            for k, v in result.headers.items()
            if k.lower().startswith(META_PREFIX)
        }
        token = (result.etag, result.last_modified, result.headers.get("x-oss-version-id"))
        crc = result.headers.get("x-oss-hash-crc64ecma")
        return SourceHead(int(result.content_length), meta, token, crc)

    def read(self, path: str, start: int, end: int) -> bytes:
        data = self.fs.cat_file(path, start=start, end=end)
        if len(data) != end - start:
            raise ConnectionError(f"{path}: short read ({len(data)} of {end - start} bytes)")
        return data

    def small(self, path: str) -> bytes | None:
        """A whole small object (an instruction file), or None if there is none."""
        head = self.head(path)
        if head is None:
            return None
        if head.size > _MAX_SMALL:
            raise ConfigError(f"{path} is too large to be an instruction file")
        return self.read(path, 0, head.size) if head.size else b""

    def files(self, root: str) -> dict[str, int]:
        """Every object under ``root`` and its stored size."""
        found = self.fs.find(root, detail=True)
        return {name: int(e.get("size") or 0) for name, e in found.items() if e["type"] == "file"}

    def isdir(self, path: str) -> bool:
        return bool(self.fs.isdir(path))

    def rm(self, path: str) -> None:
        self.fs.rm_file(path)
