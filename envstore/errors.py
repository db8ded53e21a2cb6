"""The one exception hierarchy of envstore.

Backend ``OSError`` subclasses (``FileNotFoundError``, ``PermissionError``...) are never
wrapped: they pass through unchanged so that callers' existing handling keeps working.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EnvstoreError",
    "FormatError",
    "IntegrityError",
    "KeyAccessError",
    "NotEncryptedError",
]


class EnvstoreError(Exception):
    """Base class of every error raised by envstore itself."""


class ConfigError(EnvstoreError, ValueError):
    """Invalid or missing configuration (options, key URIs, key files)."""


class KeyAccessError(EnvstoreError):
    """A key provider could not produce or unwrap a data key (denied, missing, wrong key)."""


class FormatError(EnvstoreError):
    """An object or envelope does not follow envstore format v1 (bounds, version, fields)."""


class NotEncryptedError(FormatError):
    """The object carries no envstore envelope: it was not written by envstore."""


class IntegrityError(EnvstoreError):
    """Authentication failed: tampered, truncated, extended, reordered or wrong-key data."""
