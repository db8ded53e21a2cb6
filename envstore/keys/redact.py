"""Keeping data keys out of SDK debug logs.

SDKs log what they send and receive at DEBUG:

* botocore logs every request's parameters (``botocore.endpoint``: "Making request for ...
  with params", which holds ``Encrypt``'s ``Plaintext``) and every response body
  (``botocore.parsers``: "Response body", which holds ``GenerateDataKey``'s and
  ``Decrypt``'s ``Plaintext``);
* urllib3 logs every request line, and the Alibaba Cloud shared gateway sends ``Encrypt``'s
  ``Plaintext`` in the query string (Tea's ``alibabacloud-tea`` and ``darabonba-core``
  loggers, which ``DEBUG=sdk`` turns on with their own stderr handlers, print it too).

Turning DEBUG on is a common first step when debugging, so the KMS providers install
:class:`KmsBodyRedactor` on those loggers:

* it is a *logger* filter, so it runs when the record is made, before any handler, whatever
  handlers, levels or formatters the application configures (``logging.config`` keeps the
  filters of existing loggers), and it is re-installed before every KMS call;
* it rewrites only what is secret: the value of every ``"Plaintext"`` JSON field and
  ``Plaintext=`` query parameter (the KMS APIs' name for a data key), and, while an envstore
  KMS call runs in this thread, any other record of those loggers that still mentions
  ``Plaintext``.  Every other record passes unchanged, so the application's own SDK logs
  keep working.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from collections.abc import Iterator

__all__ = ["REDACTED", "KmsBodyRedactor", "install", "kms_call"]

REDACTED = "<redacted by envstore>"
#: loggers whose DEBUG records carry request parameters or response bodies
BOTOCORE_LOGGERS = (
    "botocore.endpoint",
    "botocore.parsers",
    "botocore.awsrequest",
    "urllib3.connectionpool",
)
#: loggers that print request lines of the Alibaba Cloud SDKs (Tea, requests/urllib3)
ALIBABA_LOGGERS = ("alibabacloud-tea", "darabonba-core", "urllib3.connectionpool")

_PLAINTEXT_JSON = re.compile(r'("Plaintext"\s*:\s*")[^"]*(")')
_PLAINTEXT_QUERY = re.compile(r"((?:^|[?&/\s])Plaintext=)[^&\s\"']*")
_IN_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar("envstore_kms_call", default=False)


class KmsBodyRedactor(logging.Filter):
    """Removes KMS data keys from log records (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is the logging module's business
            return True
        if "Plaintext" not in text:
            return True
        redacted = _PLAINTEXT_JSON.sub(rf"\1{REDACTED}\2", text)
        redacted = _PLAINTEXT_QUERY.sub(rf"\1{REDACTED}", redacted)
        rest = _PLAINTEXT_QUERY.sub("", _PLAINTEXT_JSON.sub("", redacted))
        if _IN_CALL.get() and "Plaintext" in rest:
            # some other rendering of a KMS body (a parsed dict, a repr): keep the line's head
            redacted = f"{text.split(':', 1)[0]}: {REDACTED} (a KMS body with a data key)"
        record.msg, record.args = redacted, ()
        return True


_REDACTOR = KmsBodyRedactor()


def install(names: tuple[str, ...] = BOTOCORE_LOGGERS) -> None:
    """Attach the redactor to ``names`` (idempotent; cheap enough to call before each call)."""
    for name in names:
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


@contextlib.contextmanager
def kms_call(names: tuple[str, ...] = BOTOCORE_LOGGERS) -> Iterator[None]:
    """Around one KMS call: the redactor is installed and knows the call is envstore's."""
    install(names)
    token = _IN_CALL.set(True)
    try:
        yield
    finally:
        _IN_CALL.reset(token)
