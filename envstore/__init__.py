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
