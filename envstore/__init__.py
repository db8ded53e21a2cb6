"""envstore: client-side envelope encryption for fsspec filesystems."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envstore.errors import (
    ConcurrentModificationError,
    ConfigError,
    EnvstoreError,
    FormatError,
    IntegrityError,
    KeyAccessError,
    NotEncryptedError,
    OutcomeUnknownError,
)

__version__ = "0.1.0"

__all__ = [
    "ConcurrentModificationError",
    "ConfigError",
    "EnvstoreError",
    "EnvstoreFileSystem",
    "FormatError",
    "IntegrityError",
    "KeyAccessError",
    "NotEncryptedError",
    "OutcomeUnknownError",
    "__version__",
    "clean",
    "download",
    "inspect",
    "keygen",
    "migrate",
    "rewrap",
    "upload",
    "verify",
]

import fsspec as _fsspec

if TYPE_CHECKING:  # type checkers see the real signatures; at run time they load lazily
    from envstore.cleanup import clean
    from envstore.fs import EnvstoreFileSystem
    from envstore.keys.local import keygen
    from envstore.migration import migrate
    from envstore.transfer import download, inspect, rewrap, upload, verify

_fsspec.register_implementation("envstore", "envstore.fs.EnvstoreFileSystem", clobber=True)


_LAZY = {
    "EnvstoreFileSystem": "envstore.fs",
    "upload": "envstore.transfer",
    "download": "envstore.transfer",
    "inspect": "envstore.transfer",
    "verify": "envstore.transfer",
    "rewrap": "envstore.transfer",
    "keygen": "envstore.keys.local",
    "clean": "envstore.cleanup",
    "migrate": "envstore.migration",
}


def __getattr__(name: str) -> Any:  # lazy: importing envstore must not import the whole stack
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'envstore' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
