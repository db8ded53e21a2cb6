"""The ``oss`` name fsspec needs to parse ``envstore::oss://bucket/key`` URLs.

fsspec resolves the class of every protocol in a chained URL (for ``_strip_protocol`` and
``_get_kwargs_from_urls``) before the outer layer, envstore, is even imported; without an
``oss`` entry ``envstore::oss://`` would fail with "Install ossfs" where ossfs is absent.  So
the package's ``oss`` entry point names :data:`OSSFileSystem` here, which is:

* ossfs's class where ossfs is installed: plain ``oss://`` stays ossfs's;
* else :class:`OssUrls`, which parses OSS URLs and nothing more: instantiating it (a plain
  ``oss://`` URL, ``fsspec.filesystem("oss")``) raises fsspec's own "Install ossfs" error.

Either way envstore reads and writes OSS through its own oss2 filesystem
(:class:`envstore.stores.oss.OSSFileSystem`, made by ``envstore.stores.inner_filesystem``),
never through the class returned here.  This module imports neither ossfs nor oss2 eagerly.
"""

from __future__ import annotations

from typing import Any

from fsspec import AbstractFileSystem

__all__ = ["OssUrls", "strip_oss"]  # and OSSFileSystem, resolved by __getattr__

#: fsspec's message for a missing ossfs (fsspec.registry.known_implementations["oss"])
OSSFS_MISSING = "Install ossfs to access Alibaba Object Storage System"


def strip_oss(path: Any) -> Any:
    """``oss://bucket/key`` (or ``bucket/key``) -> ``bucket/key``."""
    if isinstance(path, list):
        return [strip_oss(p) for p in path]
    path = str(path)
    if path.startswith("oss://"):
        path = path[len("oss://") :]
    return path.lstrip("/").rstrip("/")


class OssUrls(AbstractFileSystem):
    """OSS URL parsing for ``envstore::oss://`` where ossfs is absent; no filesystem."""

    protocol = ("oss",)
    root_marker = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise ImportError(
            f"{OSSFS_MISSING} (envstore reads its encrypted objects at envstore::oss://...)"
        )

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        return strip_oss(path)


def __getattr__(name: str) -> Any:
    if name != "OSSFileSystem":
        raise AttributeError(name)
    try:
        from ossfs import OSSFileSystem
    except ImportError:
        return OssUrls
    return OSSFileSystem
