"""Options of the ``envstore`` layer: which are envstore's, which belong elsewhere, and hints.

fsspec hands every top-level ``storage_options`` key of a chained URL to the outer layer
(envstore), plus whatever its config (``FSSPEC_ENVSTORE...``) holds, plus the options its
consumers pass to every layer (zarr and xarray: ``asynchronous=True``).  This module sorts
them: envstore's own options, ``AbstractFileSystem``'s, consumer options that mean nothing
to envstore's synchronous layer, options for the inner filesystem written under its protocol
name (merged into ``target_options``), and mistakes, reported with a hint that points the
right way (a typo gets "did you mean ...?", an inner option gets "put it under ...").
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

import fsspec
import fsspec.config

from envstore.errors import ConfigError

__all__ = [
    "BASE_OPTIONS",
    "CONSUMER_OPTIONS",
    "ENVSTORE_OPTIONS",
    "check_deadline",
    "check_kms_options",
    "check_placement",
    "key_uri_list",
    "split_options",
    "target_options_hint",
]

#: envstore's own options (parameters of EnvstoreFileSystem)
ENVSTORE_OPTIONS = (
    "key_uri",
    "decrypt_key_uris",
    "context",
    "placement",
    "kms_options",
    "key_cache",
    "write_deadline",
    "read_deadline",
    "target_protocol",
    "target_options",
    "fs",
)
#: options of AbstractFileSystem itself, accepted and passed on to it
BASE_OPTIONS = frozenset(
    {"skip_instance_cache", "use_listings_cache", "listings_expiry_time", "max_paths"}
)
#: options fsspec consumers pass to every layer; envstore's layer is synchronous (consumers
#: that need an async filesystem wrap it, as zarr does with AsyncFileSystemWrapper) and
#: always creates the parent directories of local files it writes, so these change nothing
CONSUMER_OPTIONS = frozenset({"asynchronous", "loop", "batch_size", "auto_mkdir"})


def _inner_class(target_protocol: str | None, fs: Any) -> type | None:
    from envstore.stores import inner_class

    return type(fs) if fs is not None else inner_class(target_protocol or "file")


def _protocols(cls: type | None, target_protocol: str | None) -> set[str]:
    names = {target_protocol} if target_protocol else set()
    proto = getattr(cls, "protocol", None)
    if isinstance(proto, str):
        names.add(proto)
    elif isinstance(proto, (tuple, list)):
        names.update(p for p in proto if isinstance(p, str))
    return names


def _parameters(cls: type | None) -> set[str]:
    """Named parameters of the inner filesystem's constructor (for "put it under" hints)."""
    if cls is None:
        return set()
    try:
        params = inspect.signature(getattr(cls, "__init__")).parameters.values()  # noqa: B009
    except (TypeError, ValueError):
        return set()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in params if p.kind in kinds and p.name != "self"}


def _from_config(name: str, value: Any) -> bool:
    """True if ``name=value`` is what fsspec's config for ``envstore`` supplies."""
    conf = fsspec.config.conf.get("envstore") or {}
    return name in conf and conf[name] == value


def split_options(
    kwargs: dict[str, Any],
    target_protocol: str | None,
    target_options: Mapping[str, Any] | None,
    fs: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sort the extra keyword arguments of ``EnvstoreFileSystem``.

    Returns (options for ``AbstractFileSystem.__init__``, the inner filesystem's options).
    Raises :class:`ConfigError` for anything that is not an option of any layer.
    """
    base = {k: v for k, v in kwargs.items() if k in BASE_OPTIONS}
    inner = dict(target_options or {})
    cls = _inner_class(target_protocol, fs)
    inner_protocols = _protocols(cls, target_protocol)
    known_protocols = set(fsspec.available_protocols()) | set(fsspec.registry)
    unknown: list[str] = []
    for name, value in kwargs.items():
        if name in BASE_OPTIONS or name in CONSUMER_OPTIONS:
            continue
        if name in inner_protocols and isinstance(value, Mapping) and fs is None:
            # {"s3": {...}} where the inner filesystem is s3 (or its alias s3a), e.g. from
            # FSSPEC_ENVSTORE='{"s3": {...}}': options of the inner layer; explicit ones win
            inner = {**value, **inner}
        elif name in known_protocols and isinstance(value, Mapping):
            if _from_config(name, value):
                continue  # config for another inner protocol: not this filesystem's
            if fs is not None:
                raise ConfigError(
                    f"options for {name!r} cannot apply: fs= is an existing filesystem "
                    "instance (give its options when creating it)"
                )
            raise ConfigError(_other_protocol_message(name, target_protocol, fs))
        else:
            unknown.append(name)
    if unknown:
        msg = _unknown_message(unknown, target_protocol, fs, _parameters(cls))
        configured = [n for n in unknown if _from_config(n, kwargs[n])]
        if configured:
            msg += (
                f" ({', '.join(configured)} came from fsspec's config for 'envstore': "
                "FSSPEC_ENVSTORE* variables or files in FSSPEC_CONFIG_DIR)"
            )
        raise ConfigError(msg)
    for name in ("asynchronous", "loop"):  # envstore drives its inner filesystem synchronously
        inner.pop(name, None)
    return base, inner


def _inner_name(target_protocol: str | None, fs: Any) -> str:
    if fs is not None:
        proto = fs.protocol
        return proto[0] if isinstance(proto, (tuple, list)) else str(proto)
    return target_protocol or "file"


def _other_protocol_message(name: str, target_protocol: str | None, fs: Any) -> str:
    inner = _inner_name(target_protocol, fs)
    return (
        f"storage_options has options for {name!r}, but this envstore filesystem's inner "
        f"filesystem is {inner!r}: put them under {inner!r} (or use an envstore::{name}:// URL)"
    )


def _unknown_message(
    unknown: list[str], target_protocol: str | None, fs: Any, inner_params: set[str]
) -> str:
    """Typos of envstore options get "did you mean"; everything else is shown where it goes:
    under the inner protocol's name (the shape ends the message)."""
    inner = _inner_name(target_protocol, fs)
    candidates = [*ENVSTORE_OPTIONS, *sorted(BASE_OPTIONS)]
    typos, elsewhere = [], []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
        if close and name not in inner_params:
            typos.append(f"{_shown(name)!r}: did you mean {close[0]!r}?")
        else:
            elsewhere.append(_shown(name))
    msg = f"unknown envstore option(s) {sorted(map(_shown, unknown))}. " + " ".join(typos)
    if elsewhere:
        shape = ", ".join(f"{k!r}: ..." for k in elsewhere)
        msg += (
            (" " if typos else "")
            + "envstore takes "
            + ", ".join(ENVSTORE_OPTIONS[:8])  # up to target_protocol
            + "; options of the inner filesystem go under its protocol name, e.g. "
            + f'storage_options={{"key_uri": ..., "{inner}": {{{shape}}}}}'
        )
    return msg.rstrip()


def _shown(name: str) -> str:
    """An option name as a message may show it: never a pasted key (``-o <base64>``)."""
    from envstore.keys.uri import looks_like_key

    return "<a name that looks like a key>" if looks_like_key(name) else name


def target_options_hint(url: str) -> str:
    """For ``target_options``/``target_protocol`` given with a chained URL: fsspec sets both
    from the URL itself (and raises a bare TypeError on a second ``target_options``)."""
    inner = url.split("::", 1)[1].split("://", 1)[0] if "::" in url else "s3"
    return (
        f"with a chained URL ({url}) the inner filesystem comes from the URL: give its options "
        f'under its protocol name, storage_options={{"key_uri": ..., "{inner}": {{...}}}}, '
        "not target_options/target_protocol"
    )


# -- checks of envstore's own option values (when the filesystem is made) -------------------
PLACEMENTS = ("auto", "metadata", "header")


def key_uri_list(value: object, name: str, most: int | None = None) -> list[str]:
    """The URIs of a ``key_uri``/``decrypt_key_uris`` option, each checked (scheme and, for
    local keys, syntax) before it is kept: a rejected URI (e.g. a pasted key) never reaches a
    repr or a pickle. ``most``: how many URIs (recipients) are allowed."""
    from envstore.keys import scheme_of

    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
        raise ConfigError(f"{name} must be a key URI string or a list of them")
    for uri in value:
        scheme_of(uri)
    if most is not None and len(value) > most:
        raise ConfigError(f"at most {most} key URIs (recipients) per object")
    return list(value)


def check_deadline(value: object, name: str = "read_deadline") -> float | None:
    """``read_deadline`` / ``write_deadline``: seconds (a finite number > 0) or None (no
    deadline)."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value < float("inf")
    ):
        raise ConfigError(f"{name} must be a number of seconds > 0, or None")
    return float(value)


def check_placement(value: object) -> str:
    if value not in PLACEMENTS:
        raise ConfigError(f"placement must be one of {PLACEMENTS}, not {value!r}")
    return str(value)


def check_kms_options(value: object) -> dict[str, Any]:
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError('kms_options must be a dict per scheme, e.g. {"awskms": {...}}')
    return dict(value or {})
