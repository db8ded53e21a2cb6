"""Store adapters: which one serves an inner filesystem."""

from __future__ import annotations

import importlib

from fsspec import AbstractFileSystem

from envstore.stores.base import Head, Sink, Store

__all__ = ["ADAPTERS", "Head", "Sink", "Store", "store_for"]

#: inner protocol -> "module:Class"; anything else gets the generic header adapter
ADAPTERS: dict[str, str] = {
    "file": "envstore.stores.local:LocalStore",
    "local": "envstore.stores.local:LocalStore",
    "memory": "envstore.stores.local:MemoryStore",
    "s3": "envstore.stores.s3:S3Store",
    "s3a": "envstore.stores.s3:S3Store",
}


def store_for(fs: AbstractFileSystem) -> Store:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    for proto in protocols:
        spec = ADAPTERS.get(proto)
        if spec:
            module, _, name = spec.partition(":")
            return getattr(importlib.import_module(module), name)(fs)
    return Store(fs)
