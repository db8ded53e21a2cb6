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
from urllib.parse import unquote

__all__ = ["describe_uri", "looks_like_key", "safe_uri"]

#: master and data keys are 32 bytes; a typed key is base64 (std or url-safe) or hex of them
_KEY_BYTES = 32
_B64 = re.compile(r"[A-Za-z0-9+/]{43}|[A-Za-z0-9_-]{43}")  # one alphabet, not both
_HEX = re.compile(r"[0-9a-f]{64}")
#: what people put between hex digits: 0x / \x prefixes, spaces, newlines, ":" "-" "," ...
_HEX_NOISE = re.compile(r"""(?<![0-9a-f])0x|\\x|[\s:,;'"`\-]+""")
_SCHEME = re.compile(r"[a-z][a-z0-9-]{0,19}")
_SPLIT = re.compile(r"[\s:;,?&=@]+")
_QUOTES = "'\"`"
#: one part of a human-made name between separators: a camelCase/CamelCase run of words
#: (``alias``, ``ProductionDataKey``, ``TenantA``, ``Key2``) or an all-one-case word (a
#: lowercase one may end in one capital and digits: ``tenantA``, ``dataA0``)
_PART = re.compile(r"[a-z]*(?:[A-Z][a-z]+)+[A-Z]?[0-9]*|[a-z]{2,}[A-Z]?[0-9]*|[A-Z]{2,}[0-9]*|")
_PART_SEPS = re.compile(r"[_/-]+")


def _name_like(core: str) -> bool:
    """Whether a 43-character run of base64 characters reads as a human-made name.

    Any 43 characters of ``[A-Za-z0-9_-]`` decode as url-safe base64 to 32 bytes, so a long
    environment variable name, path or KMS alias has the shape of a key; names differ from
    random text in their letters. A name if its letters are all of one case
    (``ENVSTORE_MASTER_KEY_FOR_PRODUCTION_TENANT_A``, ``srv/keys/...``) or each part between
    ``_ - / .`` is camelCase words or one all-caps/all-lowercase word
    (``alias/ProductionDataEncryptionKeyForTenant``). Random keys pass with a probability
    of about 3e-7 (url-safe) / 1e-7 (standard alphabet), computed exactly over the 64**43
    strings (the one-case rule alone: 4e-10); a key taken for a name is at most echoed as
    that name, which this bounds.
    """
    if not any(c.islower() for c in core) or not any(c.isupper() for c in core):
        return True
    return all(_PART.fullmatch(part) for part in _PART_SEPS.split(core))


def _decodes_to_key(token: str) -> bool:
    """Hex (with any 0x, \\x, spaces, colons, dashes between digits) or base64 (std or
    url-safe, padded or not, split by whitespace, quoted) of 32 bytes, not a name."""
    if _HEX.fullmatch(_HEX_NOISE.sub("", token.lower())):
        return True
    core = "".join(token.split()).strip(_QUOTES).rstrip("=")
    if not _B64.fullmatch(core) or _name_like(core):
        return False
    padded = core + "="
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
    a run that decodes to 32 bytes from hex (``0x``/``:``/space-separated too) or base64
    (std or url-safe, with or without padding, split across lines, quoted), and that does
    not read as a name (an environment variable, a path, a KMS key id, ARN or alias)."""
    if not isinstance(text, str):
        return False
    rest = text.split("://", 1)[1] if "://" in text else text
    heads = {text, rest}
    if ":" in text:  # local:<b64>, local:/<b64>
        heads.add(text.split(":", 1)[1])
    heads |= {unquote(h) for h in heads if "%" in h}  # a URL-encoded paste
    candidates = set()
    for head in heads:  # local:///<b64>: the key itself may start with "/"
        head = head.strip().strip(_QUOTES).strip()
        candidates |= {head[i:] for i in range(4) if head[:i] == "/" * i}
    candidates |= set(_SPLIT.split(rest))
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
