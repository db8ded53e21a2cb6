"""Key providers by URI scheme, and the key ring the filesystem uses."""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Mapping

from envstore.errors import ConfigError
from envstore.keys.base import DATA_KEY_BYTES, KeyProvider, WrappedKey, canonical_context
from envstore.keys.uri import describe_uri, looks_like_key

__all__ = [
    "DATA_KEY_BYTES",
    "PROVIDERS",
    "UNCACHED",
    "KeyProvider",
    "WrappedKey",
    "canonical_context",
    "get_provider",
    "scheme_of",
]

#: URI scheme -> (module, class, pip extra). Imported lazily so the core stays light.
PROVIDERS: dict[str, tuple[str, str, str | None]] = {
    "local": ("envstore.keys.local", "LocalKeyProvider", None),
    "env": ("envstore.keys.local", "LocalKeyProvider", None),
    "alikms": ("envstore.keys.alikms", "AliKmsProvider", "alikms"),
    "alikms-instance": (
        "envstore.keys.alikms_instance",
        "AliKmsInstanceProvider",
        "alikms-instance",
    ),
    "awskms": ("envstore.keys.awskms", "AwsKmsProvider", "aws"),
    # legacy keys (envstore migrate): unwrap only
    "rsa": ("envstore.keys.rsa", "RsaKeyProvider", None),
}

_cache: dict[tuple[str, str], KeyProvider] = {}
_cache_lock = threading.Lock()


def scheme_of(uri: str) -> str:
    """The scheme of a key URI; ConfigError for anything else.

    A rejected URI is never echoed (people paste the key itself where its URI belongs): the
    message describes it by scheme and length.
    """
    known = ", ".join(f"{s}://" for s in PROVIDERS)
    if not isinstance(uri, str) or "://" not in uri:
        raise ConfigError(
            f"key_uri must look like scheme://..., one of: {known}; got {describe_uri(uri)}"
        )
    if looks_like_key(uri):
        raise ConfigError(
            f"key_uri ({describe_uri(uri)}) holds what looks like a key: a key URI names a key "
            "(local:///path/master.key, env://VAR, a KMS key id), it never contains one. If "
            "that was a real key, treat it as exposed and replace it"
        )
    scheme = uri.split("://", 1)[0]
    if scheme not in PROVIDERS:
        raise ConfigError(
            f"unknown key URI scheme in {describe_uri(uri)}; known: " + ", ".join(PROVIDERS)
        )
    if scheme in ("local", "env"):  # the core's own syntax, checked without any I/O
        from envstore.keys.local import check_uri

        check_uri(uri)
    return scheme


#: providers that read a key file or variable: not cached per process (the file or variable
#: may change); a key ring keeps the ones it made for its own lifetime
UNCACHED = frozenset({"local", "env", "rsa"})


def get_provider(
    uri: str,
    kms_options: Mapping[str, Mapping[str, object]] | None = None,
    scheme: str | None = None,
) -> KeyProvider:
    """The provider for ``uri`` (``scheme``: what :func:`scheme_of` returned for it, so that a
    URI is parsed once); KMS providers are created once per process per options, the
    :data:`UNCACHED` ones anew."""
    scheme = scheme_of(uri) if scheme is None else scheme
    module_name, class_name, extra = PROVIDERS[scheme]
    options = dict((kms_options or {}).get(scheme) or {})
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        hint = f'pip install "envstore[{extra}]"' if extra else "reinstall envstore"
        raise ConfigError(f"{scheme}:// keys need extra packages: {hint} ({exc})") from None
    if scheme in UNCACHED:
        return cls(uri, options)
    token = (uri, json.dumps(options, sort_keys=True, default=repr))
    with _cache_lock:
        provider = _cache.get(token)
        if provider is None:
            provider = _cache[token] = cls(uri, options)
    return provider
