"""Store adapters: which one serves an inner filesystem."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import Any

import fsspec
from fsspec import AbstractFileSystem

from envstore.errors import ConfigError
from envstore.stores.base import Head, Sink, Store

__all__ = ["ADAPTERS", "Head", "Sink", "Store", "inner_filesystem", "store_for"]

#: inner protocol -> "module:Class"; anything else gets the generic header adapter
ADAPTERS: dict[str, str] = {
    "file": "envstore.stores.local:LocalStore",
    "local": "envstore.stores.local:LocalStore",
    "memory": "envstore.stores.local:MemoryStore",
    "s3": "envstore.stores.s3:S3Store",
    "s3a": "envstore.stores.s3:S3Store",
    "oss": "envstore.stores.oss_store:OssStore",
}
#: inner protocol -> the pip extra that installs what it needs
EXTRAS: dict[str, str] = {"s3": "s3", "s3a": "s3", "oss": "oss"}


def missing_extra(protocol: str, exc: ImportError) -> ConfigError:
    """The one-line error for a store whose packages are not installed."""
    extra = EXTRAS.get(protocol)
    name = exc.name or getattr(exc.__cause__, "name", None)  # fsspec's "Install s3fs ..."
    missing = f" ({name} is missing)" if name else f" ({exc})"
    fix = f'pip install "envstore[{extra}]"' if extra else "install its fsspec implementation"
    return ConfigError(f"envstore::{protocol}:// needs extra packages{missing}: {fix}")


def _adapter(protocol: str) -> type[Store] | None:
    spec = ADAPTERS.get(protocol)
    if not spec:
        return None
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise missing_extra(protocol, exc) from None


def inner_filesystem(protocol: str, options: Mapping[str, Any]) -> AbstractFileSystem:
    """The inner filesystem for ``protocol``: the adapter's own where it has one (``oss`` is
    always envstore's oss2 filesystem, never ossfs), else fsspec's.

    Public for tools that read a plain store through envstore's own classes (e.g. migrating
    ``oss://`` objects): ``inner_filesystem("oss", {"endpoint": ...})``.
    """
    adapter = _adapter(protocol)
    make = getattr(adapter, "make_filesystem", None)
    if make is not None:
        return make(options)
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        raise missing_extra(protocol, exc) from None
    except ValueError:
        close = difflib.get_close_matches(protocol, fsspec.available_protocols(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown inner protocol {protocol!r}{hint}") from None
    return cls(**dict(options))


def inner_class(protocol: str) -> type[AbstractFileSystem] | None:
    """The filesystem class ``inner_filesystem(protocol, ...)`` would make (None if unknown
    or not installed); used for option hints."""
    try:
        adapter = _adapter(protocol)
    except ConfigError:
        return None
    made = getattr(adapter, "filesystem_class", None)
    if made is not None:
        return made
    try:
        return fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError):
        return None


def store_for(fs: AbstractFileSystem) -> Store:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    for proto in protocols:
        adapter = _adapter(proto)
        if adapter is not None:
            return adapter(fs)
    return Store(fs)
