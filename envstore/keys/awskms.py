"""AWS KMS through boto3: ``awskms://KEY_ID_ARN_OR_ALIAS``.

``pip install "envstore[aws]"``.  Operations:

* new data keys: ``GenerateDataKey(KeyId, NumberOfBytes=32, EncryptionContext=context)``;
* opening: ``Decrypt(CiphertextBlob, EncryptionContext=context, KeyId=<the URI's key>)``: the
  configured key is named, so AWS refuses blobs made under any other key (with an alias, under
  any key other than the one the alias names *now*; after moving an alias, add the old key's ARN
  to ``decrypt_key_uris`` to keep reading older objects);
* adding a recipient: ``Encrypt(KeyId, Plaintext=data key, EncryptionContext)``.

An empty encryption context is not sent.  Recipient fields: ``provider="awskms"``, ``key_id`` =
the key ARN AWS returned, ``blob`` = the ``CiphertextBlob`` bytes, no parameters.

Options (``kms_options["awskms"]``): boto3 client arguments ``region_name``, ``endpoint_url``,
``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``, ``verify``,
``use_ssl``, ``api_version``, ``config`` (a ``botocore.config.Config`` or a dict of its
arguments), plus ``profile_name`` (a boto3 session profile), ``connect_timeout`` /
``read_timeout`` (seconds, default 5 and 10) and ``retry_deadline`` (seconds, default 20).
Anything absent comes from boto3's default chain (environment, shared config and credentials
files, SSO, instance or container roles); the region also from a key ARN in the URI.
botocore's own retries are off (one attempt per call) unless ``config`` sets ``retries``:
envstore retries throttling and transient errors itself within ``retry_deadline``.

botocore logs request parameters and response bodies at DEBUG; the ``Plaintext`` fields of
KMS bodies are redacted on botocore's loggers (:mod:`envstore.keys.redact`), so DEBUG logging
never shows a data key.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from envstore.errors import ConfigError, KeyAccessError
from envstore.keys._retry import (
    KmsFailure,
    call_with_retry,
    clean_message,
    io_failure,
    is_retryable,
    seconds,
    setup,
)
from envstore.keys.base import DATA_KEY_BYTES, KeyProvider, WrappedKey
from envstore.keys.redact import install, kms_call

T = TypeVar("T")

_CLIENT_ARGS = {
    "region_name",
    "endpoint_url",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "verify",
    "use_ssl",
    "api_version",
}
_OPTIONS = _CLIENT_ARGS | {
    "config",
    "profile_name",
    "connect_timeout",
    "read_timeout",
    "retry_deadline",
}
_session_lock = threading.Lock()


def _classify(exc: Exception) -> KmsFailure:
    if isinstance(exc, ClientError):
        response: Mapping[str, Any] = exc.response or {}
        error = response.get("Error") or {}
        meta = response.get("ResponseMetadata") or {}
        code = str(error.get("Code") or "ClientError")
        status = meta.get("HTTPStatusCode")
        status = int(status) if isinstance(status, int) else None
        return KmsFailure(
            code,
            clean_message(error.get("Message") or ""),
            meta.get("RequestId") or None,
            status,
            is_retryable(code, status),
        )
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return KmsFailure("Timeout", "timed out", None, None, True)
    if isinstance(exc, EndpointConnectionError):
        return KmsFailure("ConnectionError", "could not connect to the endpoint", None, None, True)
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):  # closed, reset, TLS...
        return io_failure(exc)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return KmsFailure("NoCredentials", "no AWS credentials found", None, None, False)
    if isinstance(exc, BotoCoreError):
        # e.g. ParamValidationError, whose text may quote parameter values: name only
        return KmsFailure(type(exc).__name__, "", None, None, False)
    return KmsFailure(type(exc).__name__, "", None, None, False)


def _key_region(key: str) -> str | None:
    if key.startswith("arn:"):
        parts = key.split(":")
        if len(parts) >= 6 and parts[3]:
            return parts[3]
    return None


class AwsKmsProvider(KeyProvider):
    """Data keys from AWS KMS."""

    family = "awskms"

    def __init__(self, uri: str, options: Mapping[str, object] | None = None) -> None:
        super().__init__(uri, options)
        self.key, opts, self.retry_deadline = setup(
            uri, self.options, "awskms", _OPTIONS, "a key id, ARN or alias"
        )
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=seconds(opts, "connect_timeout", 5.0),
            read_timeout=seconds(opts, "read_timeout", 10.0),
        )
        user_config = opts.get("config")
        if isinstance(user_config, Mapping):
            user_config = Config(**dict(user_config))
        if user_config is not None:
            if not isinstance(user_config, Config):
                raise ConfigError("kms_options['awskms']['config'] must be a dict or a Config")
            config = config.merge(user_config)
        kwargs: dict[str, Any] = {k: v for k, v in opts.items() if k in _CLIENT_ARGS}
        install()  # before any request of this client can be logged
        if not kwargs.get("region_name"):
            region = _key_region(self.key)
            if region:
                kwargs["region_name"] = region
        try:
            with _session_lock:
                session = boto3.session.Session(profile_name=opts.get("profile_name") or None)
                self.client = session.client("kms", config=config, **kwargs)
        except NoRegionError:
            raise ConfigError(
                "awskms:// keys need a region: kms_options={'awskms': {'region_name': ...}}, "
                "AWS_DEFAULT_REGION, or a key ARN"
            ) from None
        except BotoCoreError as exc:
            raise ConfigError(
                f"cannot configure the AWS KMS client: {type(exc).__name__}"
            ) from None

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        def guarded() -> T:  # botocore's DEBUG logs of this call carry no data key
            with kms_call():
                return fn()

        return call_with_retry(
            guarded,
            _classify,
            provider="awskms",
            operation=operation,
            key=self.key,
            deadline=self.retry_deadline,
        )

    @staticmethod
    def _context(context: Mapping[str, str]) -> dict[str, Any]:
        return {"EncryptionContext": dict(context)} if context else {}

    def _key(self, response: dict[str, Any], operation: str) -> bytearray:
        key = bytearray(response.pop("Plaintext", b"") or b"")
        if len(key) != DATA_KEY_BYTES:
            rid = (response.get("ResponseMetadata") or {}).get("RequestId")
            raise KeyAccessError(
                f"awskms {operation} with key {self.key} returned no {DATA_KEY_BYTES}-byte data "
                f"key [request id {rid}]"
            )
        return key

    def matches(self, wrapped: WrappedKey) -> bool:
        if wrapped.provider != self.family:
            return False
        key = self.key
        if key.startswith("alias/") or (key.startswith("arn:") and ":alias/" in key):
            return True  # an alias resolves at the KMS (Decrypt names it)
        if key.startswith("arn:"):
            return wrapped.key_id == key
        return wrapped.key_id == key or wrapped.key_id.endswith(":key/" + key)

    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytearray, WrappedKey]:
        response = self._call(
            "GenerateDataKey",
            lambda: self.client.generate_data_key(
                KeyId=self.key, NumberOfBytes=DATA_KEY_BYTES, **self._context(context)
            ),
        )
        key = self._key(response, "GenerateDataKey")
        return key, WrappedKey(
            self.family, str(response["KeyId"]), bytes(response["CiphertextBlob"])
        )

    def wrap(self, data_key: bytes | bytearray, context: Mapping[str, str]) -> WrappedKey:
        if len(data_key) != DATA_KEY_BYTES:
            raise KeyAccessError(f"awskms wrap needs a {DATA_KEY_BYTES}-byte data key")
        response = self._call(
            "Encrypt",
            lambda: self.client.encrypt(
                KeyId=self.key, Plaintext=bytes(data_key), **self._context(context)
            ),
        )
        return WrappedKey(self.family, str(response["KeyId"]), bytes(response["CiphertextBlob"]))

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytearray:
        if wrapped.provider != self.family:
            raise KeyAccessError(f"recipient is for {wrapped.provider}, not awskms")
        response = self._call(
            "Decrypt",
            lambda: self.client.decrypt(
                CiphertextBlob=bytes(wrapped.blob), KeyId=self.key, **self._context(context)
            ),
        )
        return self._key(response, "Decrypt")
