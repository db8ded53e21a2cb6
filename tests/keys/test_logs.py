"""No data key in any log line, with DEBUG logging on for everything (the SDKs included).

Each KMS provider generates, wraps and unwraps data keys against its emulator while the root
logger is at DEBUG with a real handler (what ``logging.basicConfig(level=logging.DEBUG)`` or
``boto3.set_stream_logger("")`` set up) and pytest's caplog; the captured text must hold no
form of any data key (raw, base64, hex, reprs).
"""

from __future__ import annotations

import base64
import io
import logging
import logging.config
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest

from envstore.keys.ring import KeyRing
from tests.keys.conftest import KmsEnv
from tests.keys.leaks import secret_forms


def _logging_state() -> dict[str, tuple[int, list[logging.Handler], bool, bool]]:
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    return {lg.name: (lg.level, list(lg.handlers), lg.propagate, lg.disabled) for lg in loggers}


def _restore_logging(state: dict[str, tuple[int, list[logging.Handler], bool, bool]]) -> None:
    """Put every logger back as it was: a DEBUG level or a handler left behind would make
    every later test log (and keep) whole request bodies — gigabytes over the suite."""
    for name, lg in [("root", logging.getLogger()), *logging.Logger.manager.loggerDict.items()]:
        if not isinstance(lg, logging.Logger):
            continue
        level, handlers, propagate, disabled = state.get(
            lg.name if name != "root" else "root", (logging.NOTSET, [], True, False)
        )
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.propagate, lg.disabled = propagate, disabled


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Root logger at DEBUG with a stream handler that formats every record; the whole
    logging configuration is restored afterwards (tests here reconfigure it)."""
    caplog.set_level(logging.DEBUG)  # first: caplog restores the level it finds now
    state = _logging_state()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        _restore_logging(state)


def exercise(kms: KmsEnv) -> list[bytes]:
    """GenerateDataKey, Decrypt and Encrypt (wrap) through a fresh provider; the keys seen."""
    provider = kms.provider()
    context = {"purpose": "log-test"}
    keys = []
    for _ in range(2):
        key, wrapped = provider.generate_data_key(context)
        keys.append(bytes(key))
        assert bytes(provider.unwrap(wrapped, context)) == bytes(key)
        again = provider.wrap(key, context)
        assert bytes(provider.unwrap(again, context)) == bytes(key)
    ring = KeyRing([kms.uri], kms_options=kms.kms_options, key_cache=True)
    key, recipients = ring.new_data_key(context)
    keys.append(bytes(key))
    ring.open_data_key(recipients, context)
    assert not any(form in repr(vars(ring)) for form in secret_forms(key))
    return keys


def forms(key: bytes) -> list[str]:
    """secret_forms plus the URL-encoded base64 a query string carries."""
    b64 = base64.b64encode(key).decode()
    return [*secret_forms(key), quote(b64, safe=""), quote_plus(b64), b64[:24]]


def assert_no_keys(text: str, keys: list[bytes]) -> None:
    assert text, "nothing was logged: the test would prove nothing"
    for key in keys:
        for form in forms(key):
            assert form not in text, f"a data key ({form[:8]}...) was logged"


def test_awskms_debug_logs_hold_no_data_key(
    awskms: KmsEnv, debug_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    keys = exercise(awskms)
    text = debug_log.getvalue()
    assert "Response body" in text  # botocore did log the bodies, redacted
    assert "redacted by envstore" in text
    assert_no_keys(text, keys)
    assert_no_keys(caplog.text, keys)
    assert_no_keys("\n".join(repr(r.args) + repr(r.msg) for r in caplog.records), keys)


def test_awskms_redaction_survives_logging_reconfiguration(
    awskms: KmsEnv, debug_log: io.StringIO
) -> None:
    awskms.provider()  # installs the redaction
    logging.config.dictConfig(  # a user's config: it replaces handlers, levels, loggers
        {
            "version": 1,
            "disable_existing_loggers": False,
            "loggers": {"botocore": {"level": "DEBUG"}, "botocore.parsers": {"level": "DEBUG"}},
        }
    )
    logging.getLogger().addHandler(logging.StreamHandler(debug_log))
    keys = exercise(awskms)
    assert_no_keys(debug_log.getvalue(), keys)


def test_awskms_other_botocore_logs_are_kept(awskms: KmsEnv, debug_log: io.StringIO) -> None:
    """Only KMS key bodies are redacted: other services' bodies still reach the user's log."""
    import boto3

    awskms.provider()
    iam = boto3.client("sts", endpoint_url=awskms.options["endpoint_url"], region_name="us-east-1")
    iam.get_caller_identity()
    text = debug_log.getvalue()
    assert "GetCallerIdentityResponse" in text


def test_alikms_debug_logs_hold_no_data_key(
    alikms: KmsEnv,
    debug_log: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shared gateway sends Encrypt's plaintext in the query string: urllib3 logs request
    lines, and Tea (DEBUG=sdk) prints them to its own stderr handler."""
    pytest.importorskip("alibabacloud_kms20160120")  # the alikms extra
    monkeypatch.setenv("DEBUG", "sdk")
    keys = exercise(alikms)
    text = debug_log.getvalue()
    assert "Plaintext=" in text and "redacted by envstore" in text
    assert_no_keys(text + "\n" + caplog.text + "\n" + capfd.readouterr().err, keys)


def test_alikms_instance_debug_logs_hold_no_data_key(
    alikms_instance: KmsEnv,
    debug_log: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEBUG", "sdk")
    keys = exercise(alikms_instance)
    assert_no_keys(debug_log.getvalue() + "\n" + caplog.text + capfd.readouterr().err, keys)
