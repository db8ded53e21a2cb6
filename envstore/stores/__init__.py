"""Store adapters: which one serves an inner filesystem."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import fsspec
from fsspec import AbstractFileSystem

from envstore.stores.base import Head, Sink, Store

__all__ = ["ADAPTERS", "Head", "Sink", "Store", "inner_filesystem", "store_for"]

#: inner protocol -> "module:Class"; anything else gets the generic header adapter
ADAPTERS: dict[str, str] = {
    "file": "envstore.stores.local:LocalStore",
    "local": "envstore.stores.local:LocalStore",
    "memory": "envstore.stores.local:MemoryStore",
    "s3": "envstore.stores.s3:S3Store",
    "s3a": "envstore.stores.s3:S3Store",
    "oss": "envstore.stores.oss:OssStore",
}


def _adapter(protocol: str) -> type[Store] | None:
    spec = ADAPTERS.get(protocol)
    if not spec:
        return None
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def inner_filesystem(protocol: str, options: Mapping[str, Any]) -> AbstractFileSystem:
    """The inner filesystem for ``protocol``: the adapter's own where it has one (OSS goes
    through oss2, never ossfs), else fsspec's."""
    adapter = _adapter(protocol)
    make = getattr(adapter, "make_filesystem", None)
    if make is not None:
        return make(options)
    return fsspec.filesystem(protocol, **dict(options))


def store_for(fs: AbstractFileSystem) -> Store:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    for proto in protocols:
        adapter = _adapter(proto)
        if adapter is not None:
            return adapter(fs)
    return Store(fs)
