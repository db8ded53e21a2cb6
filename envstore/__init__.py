"""envstore: client-side envelope encryption for fsspec filesystems."""

from __future__ import annotations

from envstore.errors import (
    ConfigError,
    EnvstoreError,
    FormatError,
    IntegrityError,
    KeyAccessError,
    NotEncryptedError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "EnvstoreError",
    "FormatError",
    "IntegrityError",
    "KeyAccessError",
    "NotEncryptedError",
    "__version__",
]

import fsspec as _fsspec

_fsspec.register_implementation("envstore", "envstore.fs.EnvstoreFileSystem", clobber=True)


def __getattr__(name: str):  # lazy: importing envstore must not import the whole stack
    if name == "EnvstoreFileSystem":
        from envstore.fs import EnvstoreFileSystem

        return EnvstoreFileSystem
    raise AttributeError(name)
