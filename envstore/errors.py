"""The one exception hierarchy of envstore.

Backend ``OSError`` subclasses (``FileNotFoundError``, ``PermissionError``...) are never
wrapped: they pass through unchanged so that callers' existing handling keeps working.
"""

from __future__ import annotations

__all__ = [
    "ConcurrentModificationError",
    "ConfigError",
    "EnvstoreError",
    "FormatError",
    "IntegrityError",
    "KeyAccessError",
    "NotEncryptedError",
    "OutcomeUnknownError",
    "describe",
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


class ConcurrentModificationError(EnvstoreError):
    """The object changed between the moment envstore read it and the moment it would have
    written it back (e.g. ``rewrap`` racing a concurrent writer): nothing was applied, the
    object the other writer stored is left as it is. Read it again and retry."""


class OutcomeUnknownError(EnvstoreError, OSError):
    """A commit was sent but its answer was lost (connection dropped, timeout, or a retry
    told that the upload no longer exists): the object at ``path`` may hold the new data or
    the old. Not a clean failure: check the object (``envstore verify``) before relying on
    either, and run ``envstore clean`` for any upload left pending."""

    def __init__(self, path: str, detail: str = "the commit's answer was lost") -> None:
        super().__init__(f"{path}: outcome unknown: {detail}")
        self.path = path
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.path}: outcome unknown: {self.detail}"

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.path, self.detail)


def describe(exc: BaseException) -> str:
    """An error on one line as ``Type: message`` (OSErrors with a file as ``path: reason``):
    what the CLI prints and what verify/migrate report per object."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc)
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
