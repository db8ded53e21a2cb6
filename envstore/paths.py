"""Path checks of the envstore layer: a URL must name a place on *this* inner filesystem.

Two silent wrong targets become clear errors:

* a URL of another filesystem (``pipe_file("envstore::s3://b/k")`` on an envstore filesystem
  over local files would write to a relative path ``./s3:/b/k``);
* a URL that names no object at all (``envstore::s3://``), which the inner filesystem turns
  into an empty path and then into an unhelpful ``ValueError('')`` or an operation on the
  whole store.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from typing import IO, Any

from fsspec import AbstractFileSystem

__all__ = ["check_inner_protocol", "require_object", "write_aside"]

#: ``proto://`` or ``proto::`` at the start of a path (one-letter "schemes" are drive letters)
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)(://|::)")


def protocols(fs: AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return tuple(proto) if isinstance(proto, (tuple, list)) else (str(proto),)


def check_inner_protocol(path: Any, fs: AbstractFileSystem) -> None:
    """ValueError when ``path`` (envstore's prefix already removed) is a URL of a filesystem
    other than ``fs``."""
    if not isinstance(path, str):
        return
    match = _URL.match(path)
    if match is None or match.group(1) in protocols(fs):
        return
    inner = protocols(fs)[0]
    raise ValueError(
        f"{path!r} is a URL of another filesystem ({match.group(1)}{match.group(2)}), but this "
        f"envstore filesystem stores its objects on {inner}://; open such URLs with fsspec.open, "
        "fsspec.core.url_to_fs or envstore.open_url, which pick the inner filesystem from "
        "the URL"
    )


def require_object(path: str, original: Any) -> str:
    """``path`` (stripped for the inner filesystem) if it names something; ValueError for an
    empty path such as the one of ``envstore::s3://``."""
    if isinstance(path, str) and path.strip("/"):
        return path
    shown = f"{str(original)!r}" if str(original).strip("/") else "an empty path"
    raise ValueError(
        f"{shown} names no object (a URL such as envstore::s3:// without bucket and key); "
        "give one such as envstore::s3://bucket/key"
    )


def write_aside(lpath: str, write: Callable[[IO[bytes]], None]) -> None:
    """Run ``write`` into a hidden temporary file beside the local path ``lpath``, renamed into
    place only when it returns: a failure leaves no partial file (``get_file``, downloads)."""
    from envstore.stores.local import TEMP_PREFIX

    parent = os.path.dirname(os.path.abspath(lpath))
    os.makedirs(parent, exist_ok=True)
    temp = os.path.join(parent, f"{TEMP_PREFIX}{os.path.basename(lpath)}.{secrets.token_hex(6)}")
    try:
        with open(temp, "wb") as f:
            write(f)
        os.replace(temp, lpath)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
