"""Checks shared by the KMS provider tests: no form of a data key in an error."""

from __future__ import annotations

import base64


def secret_forms(key: bytes | bytearray) -> list[str]:
    """The ways a key could leak into text: hex, base64, bytes and bytearray reprs."""
    raw = bytes(key)
    return [raw.hex(), base64.b64encode(raw).decode(), repr(raw), repr(bytearray(raw))]


def assert_clean(exc: BaseException, key: bytes | bytearray) -> None:
    """``exc`` names no form of ``key`` and chains no SDK exception (which might)."""
    text = f"{exc}\n{exc!r}"
    for form in secret_forms(key):
        assert form not in text
    assert exc.__cause__ is None and exc.__context__ is None
