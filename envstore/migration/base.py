"""What a legacy-format reader hands the migration driver."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from envstore.migration.ciphers import Decoder
from envstore.migration.legacy_keys import LegacyKeys

UNAUTHENTICATED = "unauthenticated source"


@dataclass(frozen=True)
class Legacy:
    """A parsed legacy envelope (no key used yet).

    ``format``: ``oss2-ctr``, ``s3ec-v1-cbc``, ``s3ec-v2-cbc``, ``s3ec-v2-gcm``,
    ``s3ec-v3-gcm``; ``plain_len`` the plaintext size (None where only the end of the stream
    tells); ``authenticated``: whether the body's integrity is checked cryptographically;
    ``instruction``: the instruction file the envelope came from, if any; ``open`` unwraps the
    data key with the legacy keys and returns a fresh decoder.
    """

    format: str
    stored_len: int
    plain_len: int | None
    authenticated: bool
    open: Callable[[LegacyKeys], Decoder]
    instruction: str | None = None


def plain_int(meta: Mapping[str, str], name: str) -> int | None:
    """A non-negative decimal field, or None if absent (FormatError if malformed)."""
    from envstore.errors import FormatError

    value = meta.get(name)
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 19:
        raise FormatError(f"legacy envelope field {name} is not a size")
    return int(text)
