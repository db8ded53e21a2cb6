"""Backend failures as the builtin ``OSError`` subclasses the README promises.

s3fs turns S3 *error responses* into ``OSError`` subclasses (its ``ERROR_CODE_TO_EXCEPTION``),
and oss2's are translated in :mod:`envstore.stores.oss`.  What neither translates are failures
of the transport itself: an endpoint that cannot be reached, a connection reset or closed
mid-response, a body cut short, a timeout.  botocore, aiohttp, urllib3 and requests each raise
their own classes for those (some of them ``OSError``\\s by accident of inheritance, most not).

:data:`FAILURE_TO_EXCEPTION` maps them, most specific first, in the style of s3fs's table;
:func:`translate` *classifies* one exception against it and returns the builtin to raise (with
the original chained by the caller, ``raise new from exc``), or None when the exception is not
a transport failure (envstore's own errors, ``FileNotFoundError`` from s3fs...), which then
passes unchanged.  :func:`translating` applies it once at an adapter's public methods.
"""

from __future__ import annotations

import errno
import functools
import importlib
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["FAILURE_TO_EXCEPTION", "translate", "translating"]

F = TypeVar("F", bound=Callable[..., Any])

#: (builtin, errno) of each kind of failure
_REFUSED: tuple[type[OSError], int] = (ConnectionRefusedError, errno.ECONNREFUSED)
_TIMEOUT: tuple[type[OSError], int] = (TimeoutError, errno.ETIMEDOUT)
_ABORTED: tuple[type[OSError], int] = (ConnectionError, errno.ECONNABORTED)
_NO_PROXY: tuple[type[OSError], int] = (ConnectionError, errno.ECONNREFUSED)
_RESET: tuple[type[OSError], int] = (ConnectionResetError, errno.ECONNRESET)
_EIO: tuple[type[OSError], int] = (OSError, errno.EIO)
_BROKEN: tuple[type[OSError], int] = (ConnectionError, errno.ECONNRESET)
_DENIED: tuple[type[OSError], int] = (PermissionError, errno.EACCES)
_NO_CONNECT = "could not connect to the endpoint"
_CUT = "response body cut short"
_NO_NAME = "could not resolve the endpoint's host name"
_CHECKSUM = "response checksum mismatch: the body was altered or cut short"
_CLOSED = "connection closed by the server"
_UNREADABLE = "unreadable response from the store"

#: ``"module:Class"`` -> (builtin, errno, what happened); most specific first: the first
#: match wins (``ClientConnectorError`` is a ``ClientOSError`` is a ``ClientConnectionError``)
FAILURE_TO_EXCEPTION: tuple[tuple[str, type[OSError], int, str], ...] = (
    # urllib3 makes these ConnectTimeoutErrors: before the timeouts
    ("urllib3.exceptions:NameResolutionError", *_REFUSED, _NO_NAME),
    ("urllib3.exceptions:NewConnectionError", *_REFUSED, _NO_CONNECT),
    # timeouts
    ("botocore.exceptions:ConnectTimeoutError", *_TIMEOUT, "connect timed out"),
    ("botocore.exceptions:ReadTimeoutError", *_TIMEOUT, "read timed out"),
    ("aiohttp:ServerTimeoutError", *_TIMEOUT, "timed out"),
    ("fsspec.exceptions:FSTimeoutError", *_TIMEOUT, "timed out"),
    ("requests.exceptions:Timeout", *_TIMEOUT, "timed out"),
    ("urllib3.exceptions:TimeoutError", *_TIMEOUT, "timed out"),
    ("asyncio:TimeoutError", *_TIMEOUT, "timed out"),  # 3.10: not builtin
    # the endpoint cannot be reached
    ("botocore.exceptions:EndpointConnectionError", *_REFUSED, _NO_CONNECT),
    ("aiohttp:ClientConnectorError", *_REFUSED, _NO_CONNECT),
    ("botocore.exceptions:SSLError", *_ABORTED, "TLS failed"),
    ("botocore.exceptions:ProxyConnectionError", *_NO_PROXY, "proxy"),
    # the connection broke mid-request or mid-response
    ("botocore.exceptions:ConnectionClosedError", *_RESET, _CLOSED),
    ("aiohttp:ServerDisconnectedError", *_RESET, "server disconnected"),
    # a body cut short or unreadable
    ("aiohttp:ClientPayloadError", *_RESET, _CUT),
    ("botocore.exceptions:IncompleteReadError", *_RESET, _CUT),
    ("botocore.exceptions:ResponseStreamingError", *_RESET, _CUT),
    ("http.client:IncompleteRead", *_RESET, "body cut short"),
    ("botocore.exceptions:FlexibleChecksumError", *_EIO, _CHECKSUM),
    ("botocore.parsers:ResponseParserError", *_EIO, _UNREADABLE),
    # anything else of the HTTP stacks
    ("aiohttp:ClientOSError", *_RESET, "connection broken"),
    ("aiohttp:ClientConnectionError", *_BROKEN, "connection failed"),
    ("botocore.exceptions:HTTPClientError", *_BROKEN, "HTTP failure"),
    ("botocore.exceptions:ConnectionError", *_BROKEN, "connection"),
    ("requests.exceptions:ConnectionError", *_BROKEN, "connection"),
    ("urllib3.exceptions:HTTPError", *_BROKEN, "HTTP failure"),
    ("aiohttp:ClientError", *_EIO, "HTTP client error"),
    ("botocore.exceptions:NoCredentialsError", *_DENIED, "no credentials found"),
    ("botocore.exceptions:BotoCoreError", *_EIO, "store client error"),
)

_classes: list[tuple[type[BaseException], type[OSError], int, str]] | None = None


def _table() -> list[tuple[type[BaseException], type[OSError], int, str]]:
    """The table with its classes imported (entries of packages not installed are skipped)."""
    global _classes
    if _classes is None:
        out = []
        for spec, builtin, code, phrase in FAILURE_TO_EXCEPTION:
            module, _, name = spec.partition(":")
            try:
                cls = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                continue
            out.append((cls, builtin, code, phrase))
        _classes = out
    return _classes


def _is_builtin_oserror(exc: BaseException) -> bool:
    """An OSError raised as such (FileNotFoundError from s3fs, our own): nothing to do."""
    return isinstance(exc, OSError) and type(exc).__module__ == "builtins"


def translate(exc: BaseException, path: str, operation: str = "") -> OSError | None:
    """The builtin OSError for transport failure ``exc`` on ``path``; None: raise it as is."""
    if _is_builtin_oserror(exc):
        return None
    inner = _wrapped(exc)
    if inner is not None:  # aiobotocore wraps a reset mid-request as EndpointConnectionError
        found = translate(inner, path, operation)
        if found is not None:
            return found
    for cls, builtin, code, phrase in _table():
        if isinstance(exc, cls):
            detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            cause = f"{type(exc).__name__}{': ' + detail if detail else ''}"
            text = f"{phrase} ({operation + '; ' if operation else ''}{cause})"
            return builtin(code, text, str(path))  # the path is the OSError's filename
    return None


def _wrapped(exc: BaseException) -> BaseException | None:
    """The transport exception an SDK exception was made from: botocore's ``kwargs["error"]``,
    urllib3's ``reason`` (``MaxRetryError``), requests' first argument."""
    kwargs = getattr(exc, "kwargs", None)
    candidates = [
        kwargs.get("error") if isinstance(kwargs, dict) else None,
        getattr(exc, "reason", None),
        exc.args[0] if type(exc).__module__.startswith("requests") and exc.args else None,
    ]
    for inner in candidates:
        if isinstance(inner, BaseException) and inner is not exc:
            return inner
    return None


def translating(path_of: Callable[..., str], operation: str = "") -> Callable[[F], F]:
    """Decorator: failures leaving the method become builtins, original chained, raised once.

    ``path_of(self, *args, **kwargs)`` names the object for the message.
    """

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                new = translate(exc, _safe(path_of, args, kwargs), operation or fn.__name__)
                if new is None:
                    raise
                err = exc
            raise new from err  # outside the except: one clean chain, no "During handling"

        return inner  # type: ignore[return-value]

    return wrap


def _safe(path_of: Callable[..., str], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    try:
        return str(path_of(*args, **kwargs))
    except Exception:
        return "?"
