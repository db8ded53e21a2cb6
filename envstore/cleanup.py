"""``envstore clean``: remove what writes killed before their commit left behind.

A write that is killed (SIGKILL, power loss) before it commits leaves no object, but it can
leave a hidden ``.envstore-part-*`` temporary file (local files) or a pending multipart upload
(S3, OSS) that the store keeps, and bills, until someone aborts it.  :func:`clean` removes
those older than a given age under a path; a running write's leftovers are younger than that.
"""

from __future__ import annotations

import re
from typing import Any

from envstore.errors import ConfigError

__all__ = ["DEFAULT_AGE", "clean", "parse_age"]

#: default minimum age of a leftover (a write running longer than this would be cut off)
DEFAULT_AGE = 86400.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_age(value: str | float | int) -> float:
    """Seconds from ``"90s"``, ``"30m"``, ``"12h"``, ``"1d"``, ``"2w"`` or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"not an age: {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _AGE.match(str(value))
        if match is None:
            raise ConfigError(f"not an age: {value!r} (examples: 90s, 30m, 12h, 1d, 2w)")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds < 0:
        raise ConfigError(f"an age cannot be negative: {value!r}")
    return seconds


def clean(
    url: str, older_than: str | float = DEFAULT_AGE, dry_run: bool = False, **options: Any
) -> list[dict[str, Any]]:
    """Remove stale temporary files and abort stale multipart uploads under ``url``.

    ``url`` is an ``envstore::`` URL of a directory or prefix (S3/OSS: uploads whose key starts
    with it); ``older_than`` an age (``"1d"``, ``"12h"``, seconds) — leftovers younger than it
    are kept, as they may belong to a write still running. With ``dry_run`` nothing is
    removed. Returns one dict per leftover: ``kind`` (``temp-file`` or ``multipart-upload``),
    ``path``, ``age`` (seconds), ``removed``, and ``upload_id`` for uploads.

    Stores without leftovers of their own (memory, other fsspec filesystems) return ``[]``.
    """
    from envstore.transfer import open_url

    seconds = parse_age(older_than)
    fs, path = open_url(url, **options)
    sweep = getattr(fs.store, "clean", None)
    if sweep is None:
        return []
    return sweep(path, seconds, dry_run)
