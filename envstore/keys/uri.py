"""How key URIs may appear in messages, reprs and logs.

A key URI is a *reference* (``local:///path``, ``env://VAR``, ``awskms://alias/x``); people
still paste the key itself where a URI belongs (``key_uri="<base64>"``, ``env://<base64>``,
``local:<base64>``).  Such a value is never echoed: messages about a rejected URI describe it
(scheme and length) instead, and a URI holding something that decodes to a 32-byte key is
rejected before it reaches any provider, message or repr.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["describe_uri", "looks_like_key", "safe_uri"]

#: master and data keys are 32 bytes; a typed key is base64 (std or url-safe) or hex of them
_KEY_BYTES = 32
_B64 = re.compile(r"[A-Za-z0-9+/_-]{42,44}={0,2}")
_HEX = re.compile(r"[0-9A-Fa-f]{64}")
_SCHEME = re.compile(r"[a-z][a-z0-9-]{0,19}")


def _decodes_to_key(token: str) -> bool:
    if _HEX.fullmatch(token):
        return True
    if not _B64.fullmatch(token):
        return False
    padded = token.rstrip("=")
    padded += "=" * (-len(padded) % 4)
    for alt in (None, b"-_"):
        try:
            raw = base64.b64decode(padded, altchars=alt, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == _KEY_BYTES:
            return True
    return False


def looks_like_key(text: object) -> bool:
    """Whether ``text`` (a key URI, a part of one, a path) holds what looks like a typed key:
    a run that decodes to 32 bytes from base64 / url-safe base64 / hex."""
    if not isinstance(text, str):
        return False
    rest = text.split("://", 1)[1] if "://" in text else text
    heads = {text.strip(), rest.strip()}
    if ":" in text:  # local:<b64>, local:/<b64>
        heads.add(text.split(":", 1)[1].strip())
    candidates = set()
    for head in heads:  # local:///<b64>: the key itself may start with "/"
        candidates |= {head[i:] for i in range(4) if head[:i] == "/" * i}
    candidates |= set(re.split(r"[\s:;,?&=@]+", rest))
    return any(_decodes_to_key(c) for c in candidates if c)


def describe_uri(uri: object) -> str:
    """A key URI described without its text: type or scheme, and length."""
    if not isinstance(uri, str):
        return f"a {type(uri).__name__} (not a key URI string)"
    scheme = uri.split("://", 1)[0] if "://" in uri else None
    if scheme is not None and _SCHEME.fullmatch(scheme):
        return f"a {len(uri)}-character key URI with scheme {scheme!r}"
    return f"a {len(uri)}-character value without a known scheme://"


def safe_uri(uri: object) -> str:
    """``uri`` itself where it is a plain reference, else its description (for reprs and
    messages about URIs that were accepted once)."""
    if isinstance(uri, str) and "://" in uri and not looks_like_key(uri):
        scheme = uri.split("://", 1)[0]
        if _SCHEME.fullmatch(scheme):
            return uri
    return f"<{describe_uri(uri)}>"
