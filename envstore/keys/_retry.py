"""Shared plumbing of the KMS providers: retries, error reports, option parsing.

Every KMS call goes through :func:`call_with_retry`:

* each failure is *classified* by the provider into a :class:`KmsFailure` (error code, HTTP
  status, request id, a short server message, retryable or not);
* throttling and transient failures (connection errors, timeouts, HTTP 5xx) are retried with
  exponential backoff and jitter until ``retry_deadline`` seconds (default 20) have passed since
  the first attempt; everything else fails at once;
* the final failure becomes a :class:`envstore.errors.KeyAccessError` whose message names the
  provider, operation, key, error code and request id.  It is raised *outside* the ``except``
  block so the SDK exception (whose request objects may hold a plaintext data key, e.g. the body
  of an ``Encrypt`` call) is neither chained nor reachable from ``__context__``.

The SDKs' own retry loops are switched off by the providers so that this deadline is the only
one.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from envstore.errors import ConfigError, KeyAccessError

T = TypeVar("T")

DEFAULT_RETRY_DEADLINE = 20.0
#: first backoff step and cap (seconds); each retry doubles the step, half of it is jitter
BASE_DELAY = 0.05
MAX_DELAY = 2.0
_MAX_MESSAGE = 300

#: codes that mean "slow down" or "try again" across Alibaba Cloud and AWS
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "Rejected.Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalException",
        "KMSInternalException",
        "DependencyTimeoutException",
        "KeyUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ConnectionError",
        "Timeout",
    }
)


@dataclass(frozen=True)
class KmsFailure:
    """One failed KMS call as envstore reports it (never holds request data)."""

    code: str
    message: str = ""
    request_id: str | None = None
    status: int | None = None
    retryable: bool = False


def is_retryable(code: str | None, status: int | None) -> bool:
    """Throttling codes, transient codes and HTTP 5xx are worth another attempt."""
    if status is not None and status >= 500:
        return True
    if not code:
        return False
    return code in RETRYABLE_CODES or code.startswith(("Throttling", "Rejected.Throttling"))


def clean_message(text: object) -> str:
    """A message on one line, short, with URLs and query strings cut out.

    Server messages do not echo request data, but client-side exception texts may quote the
    request URL (whose query string can carry a plaintext, see :func:`io_failure`).
    """
    s = re.sub(r"\s+", " ", str(text or "")).strip()
    s = re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://\S*", "<url>", s)
    s = re.sub(r"\?\S*=\S*", "?<query>", s)
    if len(s) > _MAX_MESSAGE:
        s = s[: _MAX_MESSAGE - 3] + "..."
    return s


_IO_PHRASES = (
    ("certificate", "TLS certificate verification failed"),
    ("refused", "connection refused"),
    ("timed out", "timed out"),
    ("timeout", "timed out"),
    ("reset", "connection reset"),
    ("aborted", "connection aborted"),
    ("broken pipe", "broken pipe"),
    ("remote end closed", "connection closed by the server"),
    ("name or service not known", "host name not resolved"),
    ("nodename nor servname", "host name not resolved"),
    ("temporary failure in name resolution", "host name not resolved"),
    ("ssl", "TLS handshake failed"),
)


def io_failure(text: object) -> KmsFailure:
    """A connection-level failure, summarised without the request URL or body.

    SDK messages quote the request URL, and the shared-gateway ``Encrypt`` action carries its
    plaintext in the query string: never copy such text into an error.
    """
    low = str(text or "").lower()
    phrase = next((p for needle, p in _IO_PHRASES if needle in low), "connection failed")
    if phrase.startswith("TLS certificate"):  # a wrong CA or host name does not heal itself
        return KmsFailure("TLSError", phrase, None, None, False)
    code = "Timeout" if phrase == "timed out" else "ConnectionError"
    return KmsFailure(code, phrase, None, None, True)


def describe(failure: KmsFailure) -> str:
    parts = [failure.code or "UnknownError"]
    if failure.status is not None:
        parts.append(f"(HTTP {failure.status})")
    text = " ".join(parts)
    if failure.message:
        text += f": {failure.message}"
    text += f" [request id {failure.request_id or 'none'}]"
    return text


def call_with_retry(
    fn: Callable[[], T],
    classify: Callable[[Exception], KmsFailure],
    *,
    provider: str,
    operation: str,
    key: str,
    deadline: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``fn()``, retried on retryable failures until ``deadline`` seconds; KeyAccessError else."""
    start = clock()
    attempt = 0
    while True:
        attempt += 1
        failure: KmsFailure | None = None
        try:
            return fn()
        except Exception as exc:  # every SDK error is classified; nothing is chained
            failure = classify(exc)
        elapsed = clock() - start
        if failure.retryable:
            step = min(MAX_DELAY, BASE_DELAY * (2 ** (attempt - 1)))
            delay = step / 2 + random.uniform(0, step / 2)
            if elapsed + delay < deadline:
                sleep(delay)
                continue
            raise KeyAccessError(
                f"{provider} {operation} with key {key} failed: {describe(failure)}; "
                f"gave up after {attempt} attempt(s) in {elapsed:.1f}s "
                f"(retry_deadline {deadline:g}s)"
            )
        raise KeyAccessError(f"{provider} {operation} with key {key} failed: {describe(failure)}")


# -- options ---------------------------------------------------------------------------------
def take_deadline(options: dict[str, object]) -> float:
    """Pop ``retry_deadline`` (seconds, default 20) from ``options``."""
    value = options.pop("retry_deadline", DEFAULT_RETRY_DEADLINE)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError("kms option retry_deadline must be a number of seconds >= 0")
    return float(value)


def seconds(options: Mapping[str, object], name: str, default: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"kms option {name} must be a positive number of seconds")
    return float(value)


def setup(
    uri: str, options: Mapping[str, object], scheme: str, known: set[str], usage: str
) -> tuple[str, dict[str, object], float]:
    """Common provider set-up: the key part of ``uri`` (ConfigError with ``usage`` if empty),
    the options checked against ``known``, and the retry deadline taken out of them."""
    key = uri.split("://", 1)[1] if "://" in uri else ""
    if not key:
        raise ConfigError(f"{scheme}:// key URI needs {usage}")
    from envstore.keys.uri import describe_uri, looks_like_key

    if looks_like_key(key):  # a pasted key: never sent to the KMS, never echoed
        raise ConfigError(
            f"{scheme}:// key URI needs {usage}, not what looks like a key; got {describe_uri(uri)}"
        )
    opts = dict(options)
    check_known(scheme, opts, known)
    return key, opts, take_deadline(opts)


def check_known(scheme: str, options: Mapping[str, object], known: set[str]) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"unknown kms_options[{scheme!r}] entries {unknown}; known: {sorted(known)}"
        )


def split_endpoint(endpoint: str, protocol: str | None) -> tuple[str, str | None]:
    """``https://host:port/`` -> (``host:port``, ``https``); a bare ``host:port`` keeps protocol."""
    endpoint = endpoint.strip()
    for scheme in ("https", "http"):
        prefix = scheme + "://"
        if endpoint.lower().startswith(prefix):
            return endpoint[len(prefix) :].rstrip("/"), protocol or scheme
    return endpoint.rstrip("/"), protocol


def option_str(options: Mapping[str, object], name: str) -> str | None:
    value = options.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"kms option {name} must be a string")
    return value
