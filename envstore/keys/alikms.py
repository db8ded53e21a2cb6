"""Alibaba Cloud KMS through the shared-gateway OpenAPI: ``alikms://KEY_ID_OR_ALIAS``.

Uses the OpenAPI SDK ``alibabacloud-kms20160120`` (``pip install "envstore[alikms]"``):

* new data keys: ``GenerateDataKey(KeyId, NumberOfBytes=32, EncryptionContext=context)``;
* opening: ``Decrypt(CiphertextBlob, EncryptionContext=context)`` (the blob names its key);
* adding a recipient: ``Encrypt(KeyId, Plaintext=base64(data key), EncryptionContext)``, so that
  ``Decrypt`` returns the same base64 text as for a ``GenerateDataKey`` blob.

The encryption context is sent as the ``EncryptionContext`` JSON object; an empty context is not
sent at all.  The ``Advance*`` operations (KMS-instance keys over the shared gateway) are not
used.

``Decrypt`` takes no key id (the blob names its key): a URI with a key id or key ARN only
opens recipients recorded for that key, and the key the KMS reports after ``Decrypt`` is checked
against it; a URI with an alias opens any ``alikms`` recipient the credentials may decrypt.

Recipient (``WrappedKey``) fields: ``provider="alikms"``, ``key_id`` = the ``KeyId`` the KMS
returned (a key id even when the URI names an alias), ``blob`` = the **base64-decoded bytes**
of ``CiphertextBlob`` (so the envelope's base64 field is exactly the KMS's ``CiphertextBlob``
string).  Should a KMS ever return a blob that is not canonical base64, the raw ASCII string is
stored instead and marked with ``params={"blob": "text"}``.  ``Decrypt`` needs nothing else.

Options (``kms_options["alikms"]``), all optional:

``region_id``
    e.g. ``cn-hangzhou``: endpoint ``kms.<region>.aliyuncs.com``.  Taken from a key ARN
    (``acs:kms:<region>:<uid>:key/<id>``) or ``ALIBABA_CLOUD_REGION_ID`` when absent.
``endpoint``
    ``host[:port]`` or ``http(s)://host[:port]`` (VPC endpoints, tests); else
    ``ENVSTORE_ALIKMS_ENDPOINT`` unless ``region_id`` is given.  An endpoint or a region is
    required.
``protocol``
    ``https`` (default) or ``http``.
``access_key_id``, ``access_key_secret``, ``security_token``
    static credentials; else the variables ``ALIBABA_CLOUD_ACCESS_KEY_ID``,
    ``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` (+ ``ALIBABA_CLOUD_SECURITY_TOKEN``) when set; else the
    Alibaba Cloud default credential chain of ``alibabacloud_credentials`` (credentials file,
    CLI profile, ECS RAM role, OIDC, credentials URI).
``connect_timeout``, ``read_timeout``
    seconds per HTTP attempt (default 5 and 10).
``retry_deadline``
    seconds during which throttling and transient errors are retried (default 20).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from typing import TypeVar

from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsClient
from alibabacloud_tea_openapi import models as openapi_models
from Tea.exceptions import TeaException

from envstore.errors import ConfigError, KeyAccessError
from envstore.keys._retry import (
    KmsFailure,
    call_with_retry,
    clean_message,
    io_failure,
    is_retryable,
    option_str,
    seconds,
    setup,
    split_endpoint,
)
from envstore.keys.base import DATA_KEY_BYTES, KeyProvider, WrappedKey
from envstore.keys.redact import ALIBABA_LOGGERS, kms_call

T = TypeVar("T")

_OPTIONS = {
    "region_id",
    "endpoint",
    "protocol",
    "access_key_id",
    "access_key_secret",
    "security_token",
    "connect_timeout",
    "read_timeout",
    "retry_deadline",
}


def _classify(exc: Exception) -> KmsFailure:
    """Map an SDK exception to a KmsFailure (code, status, request id, retryable)."""
    inner = getattr(exc, "inner_exception", None)
    if isinstance(inner, Exception) and inner is not exc:
        if type(inner).__name__ == "RetryError":
            # the SDK's wrapper of an I/O problem (refused, reset, timed out) before any response
            return io_failure(getattr(inner, "message", None) or "")
        return _classify(inner)
    if isinstance(exc, TeaException):
        code = str(getattr(exc, "code", None) or type(exc).__name__)
        status = getattr(exc, "status_code", None)
        data = getattr(exc, "data", None)
        if status is None and isinstance(data, Mapping):
            status = data.get("statusCode")
        request_id = getattr(exc, "request_id", None)
        if (not request_id or request_id == "None") and isinstance(data, Mapping):
            request_id = data.get("RequestId") or data.get("requestId")
        message = getattr(exc, "message", "") or ""
        if isinstance(data, Mapping) and data.get("Message"):
            message = data["Message"]
        status_int = int(str(status)) if str(status).isdigit() else None
        return KmsFailure(
            code,
            clean_message(message),
            str(request_id) if request_id and request_id != "None" else None,
            status_int,
            is_retryable(code, status_int),
        )
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return io_failure(exc)
    name = type(exc).__name__
    if "Credential" in name:
        return KmsFailure("CredentialsError", clean_message(str(exc)), None, None, False)
    return KmsFailure(name, clean_message(str(exc)), None, None, False)


class AliKmsProvider(KeyProvider):
    """Data keys from Alibaba Cloud KMS (shared gateway, OpenAPI 2016-01-20)."""

    family = "alikms"

    def __init__(self, uri: str, options: Mapping[str, object] | None = None) -> None:
        super().__init__(uri, options)
        self.key, opts, self.retry_deadline = setup(
            uri, self.options, "alikms", _OPTIONS, "a key id or alias: alikms://KEY_ID_OR_ALIAS"
        )

        region = option_str(opts, "region_id")
        endpoint = option_str(opts, "endpoint")
        if endpoint is None and region is None:
            endpoint = os.environ.get("ENVSTORE_ALIKMS_ENDPOINT") or None
        if region is None and self.key.startswith("acs:kms:"):
            region = self.key.split(":")[2] or None
        region = region or os.environ.get("ALIBABA_CLOUD_REGION_ID") or None
        protocol = option_str(opts, "protocol")
        if endpoint:
            endpoint, protocol = split_endpoint(endpoint, protocol)
        if not endpoint and not region:
            raise ConfigError(
                "alikms:// keys need a region or an endpoint: kms_options={'alikms': "
                "{'region_id': 'cn-hangzhou'}} or ALIBABA_CLOUD_REGION_ID"
            )
        protocol = (protocol or "https").lower()
        if protocol not in ("http", "https"):
            raise ConfigError("kms_options['alikms']['protocol'] must be 'http' or 'https'")

        config = openapi_models.Config(
            endpoint=endpoint or None,
            region_id=region,
            protocol=protocol,
            connect_timeout=int(seconds(opts, "connect_timeout", 5.0) * 1000),
            read_timeout=int(seconds(opts, "read_timeout", 10.0) * 1000),
        )
        ak = option_str(opts, "access_key_id")
        secret = option_str(opts, "access_key_secret")
        token = option_str(opts, "security_token")
        if ak is None and secret is None:
            ak = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID") or None
            secret = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET") or None
            token = token or os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN") or None
        if (ak is None) != (secret is None):
            raise ConfigError("alikms needs both access_key_id and access_key_secret (or neither)")
        if ak is not None:
            config.access_key_id = ak
            config.access_key_secret = secret
            config.security_token = token
        else:
            try:
                config.credential = CredentialClient()
            except Exception as exc:
                raise ConfigError(
                    f"no Alibaba Cloud credentials for alikms://: {type(exc).__name__}"
                ) from None
        try:
            self.client = KmsClient(config)
        except TeaException as exc:
            raise ConfigError(f"cannot configure the alikms client: {exc.code}") from None

    # -- helpers ---------------------------------------------------------------------------
    def call(self, operation: str, fn: Callable[[], T], key: str | None = None) -> T:
        """Run one KMS ``operation`` with retries, its SDK logs redacted (also used by
        migration to open legacy alikms envelopes)."""

        def guarded() -> T:  # the SDK's DEBUG logs of this call carry no data key
            with kms_call(ALIBABA_LOGGERS):
                return fn()

        return call_with_retry(
            guarded,
            _classify,
            provider="alikms",
            operation=operation,
            key=key or self.key,
            deadline=self.retry_deadline,
        )

    @staticmethod
    def _context(context: Mapping[str, str]) -> dict[str, str] | None:
        return dict(context) if context else None

    def _decode_key(self, plaintext: object, operation: str, request_id: object) -> bytearray:
        try:
            key = bytearray(base64.b64decode(str(plaintext), validate=True))
        except (binascii.Error, ValueError):
            key = bytearray()
        if len(key) != DATA_KEY_BYTES:
            raise KeyAccessError(
                f"alikms {operation} with key {self.key} returned no {DATA_KEY_BYTES}-byte data "
                f"key [request id {request_id}]"
            )
        return key

    def _wrapped(self, key_id: object, blob: object) -> WrappedKey:
        text = str(blob or "")
        params: dict[str, str] = {}
        try:
            raw = base64.b64decode(text, validate=True)
            canonical = base64.b64encode(raw).decode("ascii") == text
        except (binascii.Error, ValueError):
            raw, canonical = b"", False
        if not canonical:
            raw = text.encode("ascii")
            params["blob"] = "text"
        if not raw:
            raise KeyAccessError(f"alikms returned an empty CiphertextBlob for key {self.key}")
        return WrappedKey(self.family, str(key_id or self.key), raw, params)

    @staticmethod
    def _blob_text(wrapped: WrappedKey) -> str:
        if wrapped.params.get("blob") == "text":
            return wrapped.blob.decode("ascii")
        return base64.b64encode(wrapped.blob).decode("ascii")

    # -- KeyProvider -------------------------------------------------------------------------
    def _bare_key_id(self) -> str | None:
        """The key id the URI names, or None for an alias (resolved by the KMS)."""
        key = self.key
        if key.startswith("alias/") or ":alias/" in key:
            return None
        if key.startswith("acs:kms:") and ":key/" in key:
            return key.rsplit(":key/", 1)[1]
        return key

    @staticmethod
    def _same_key(reported: str, bare: str) -> bool:
        return reported == bare or reported.endswith(":key/" + bare)

    def matches(self, wrapped: WrappedKey) -> bool:
        if wrapped.provider != self.family:
            return False
        bare = self._bare_key_id()
        return bare is None or self._same_key(wrapped.key_id, bare)

    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytearray, WrappedKey]:
        request = kms_models.GenerateDataKeyRequest(
            key_id=self.key,
            number_of_bytes=DATA_KEY_BYTES,
            encryption_context=self._context(context),
        )
        body = self.call("GenerateDataKey", lambda: self.client.generate_data_key(request)).body
        key = self._decode_key(body.plaintext, "GenerateDataKey", body.request_id)
        body.plaintext = None
        return key, self._wrapped(body.key_id, body.ciphertext_blob)

    def wrap(self, data_key: bytes | bytearray, context: Mapping[str, str]) -> WrappedKey:
        if len(data_key) != DATA_KEY_BYTES:
            raise KeyAccessError(f"alikms wrap needs a {DATA_KEY_BYTES}-byte data key")
        request = kms_models.EncryptRequest(
            key_id=self.key,
            plaintext=base64.b64encode(bytes(data_key)).decode("ascii"),
            encryption_context=self._context(context),
        )
        try:
            body = self.call("Encrypt", lambda: self.client.encrypt(request)).body
        finally:
            request.plaintext = None
        return self._wrapped(body.key_id, body.ciphertext_blob)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytearray:
        if not self.matches(wrapped):
            raise KeyAccessError(
                f"recipient is for {wrapped.provider}:{wrapped.key_id}, not alikms://{self.key}"
            )
        request = kms_models.DecryptRequest(
            ciphertext_blob=self._blob_text(wrapped),
            encryption_context=self._context(context),
        )
        body = self.call("Decrypt", lambda: self.client.decrypt(request), key=wrapped.key_id).body
        key = self._decode_key(body.plaintext, "Decrypt", body.request_id)
        body.plaintext = None
        bare = self._bare_key_id()
        if bare is not None and not self._same_key(str(body.key_id or ""), bare):
            # the envelope named this key but the blob belongs to another one
            key[:] = bytes(len(key))
            raise KeyAccessError(
                f"alikms Decrypt: the wrapped key was made by key {body.key_id}, not {bare} "
                f"[request id {body.request_id}]"
            )
        return key
