"""Alibaba Cloud KMS instance (dedicated gateway): ``alikms-instance://KEY_ID``.

Uses the KMS Instance SDK ``alibabacloud-dkms-gcs`` (``pip install
"envstore[alikms-instance]"``; it pins ``pyopenssl<23.3``, hence cryptography 41, and
``protobuf<4``, so it usually lives in its own environment).  Its top-level modules have generic
names (``sdk``, ``openapi``, ``openapi_util``): they are imported when this module is imported
(which :func:`envstore.keys.get_provider` does lazily, turning an ImportError into a
ConfigError naming the extra), and checked to be that SDK.

Operations (API version ``dkms-gcs-0.2``), the context always bound as GCM additional
authenticated data ``Aad = envstore.keys.base.canonical_context(context)``:

* new data keys: ``GenerateDataKey(KeyId, NumberOfBytes=32, Aad)``;
* opening: ``Decrypt(KeyId, CiphertextBlob, Iv, Algorithm, Aad)`` with the URI's key id (or
  alias), so the instance refuses blobs of any other key;
* adding a recipient: ``Encrypt(KeyId, Plaintext=data key, Aad)``.

Recipient fields: ``provider="alikms-instance"``, ``key_id`` = the ``KeyId`` the instance
returned, ``blob`` = ``CiphertextBlob``, ``params = {"iv": base64(Iv), "alg": Algorithm}``.

Options (``kms_options["alikms-instance"]``), with environment fallbacks:

``endpoint``
    ``<instance id>.cryptoservice.kms.aliyuncs.com[:port]`` (or ``https://...``);
    ``ENVSTORE_ALIKMS_INSTANCE_ENDPOINT``.  Required.
``protocol``
    ``https`` (default) or ``http``.
``client_key_file`` or ``client_key_content``
    the ClientKey JSON file (``{"KeyId": ..., "PrivateKeyData": <base64 PKCS#12>}``) or its
    text; ``ENVSTORE_ALIKMS_INSTANCE_CLIENT_KEY_FILE``.  Required.
``client_key_password``
    the ClientKey's password; ``ENVSTORE_ALIKMS_INSTANCE_CLIENT_KEY_PASSWORD``.  Required.
``ca_file``
    the instance CA certificate (PEM); ``ENVSTORE_ALIKMS_INSTANCE_CA_FILE``.  Without it the
    system trust store is used; ``ignore_ssl=True`` turns verification off (tests only).
``connect_timeout``, ``read_timeout``
    seconds per attempt (default 5 and 10).
``retry_deadline``
    seconds during which throttling and transient errors are retried (default 20).  The SDK's
    own retry loop (3 tries, 1 s apart) is switched off.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

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
from envstore.keys.base import DATA_KEY_BYTES, KeyProvider, WrappedKey, canonical_context
from envstore.keys.redact import ALIBABA_LOGGERS, kms_call

T = TypeVar("T")

_OPTIONS = {
    "endpoint",
    "protocol",
    "client_key_file",
    "client_key_content",
    "client_key_password",
    "ca_file",
    "ignore_ssl",
    "connect_timeout",
    "read_timeout",
    "retry_deadline",
}
_ENV = "ENVSTORE_ALIKMS_INSTANCE_"
_DEFAULT_ALGORITHM = "AES_GCM"


def _load_sdk() -> tuple[Any, Any, Any, Any, type[Exception]]:
    """The SDK's (client module, sdk models, openapi models, runtime models, TeaException)."""
    try:
        from openapi import models as openapi_models
        from openapi_util import models as util_models
        from sdk import client as sdk_client
        from sdk import models as sdk_models
        from Tea.exceptions import TeaException
    except ImportError as exc:
        raise ImportError(f"alibabacloud-dkms-gcs is not installed ({exc})") from None
    if not hasattr(sdk_client, "Client") or not hasattr(sdk_models, "GenerateDataKeyRequest"):
        raise ImportError("the installed 'sdk' module is not alibabacloud-dkms-gcs")
    return sdk_client, sdk_models, openapi_models, util_models, TeaException


_sdk_client, _sdk_models, _openapi_models, _util_models, _TeaException = _load_sdk()


def _classify(exc: Exception) -> KmsFailure:
    inner = getattr(exc, "inner_exception", None)
    if isinstance(inner, Exception) and inner is not exc:
        if type(inner).__name__ == "RetryError":
            # the SDK's wrapper of an I/O problem (refused, reset, timed out) before any response
            return io_failure(getattr(inner, "message", None) or "")
        return _classify(inner)
    if isinstance(exc, _TeaException):
        code = str(getattr(exc, "code", None) or "")
        data = getattr(exc, "data", None)
        status = request_id = None
        if isinstance(data, Mapping):
            status = data.get("httpCode")
            request_id = data.get("requestId")
        status_int = int(str(status)) if str(status).isdigit() else None
        if not code:  # e.g. the SDK's own validation errors
            message = str(getattr(exc, "message", "") or "")
            return KmsFailure("ClientError", clean_message(message), None, status_int, False)
        return KmsFailure(
            code,
            clean_message(getattr(exc, "message", "") or ""),
            str(request_id) if request_id else None,
            status_int,
            is_retryable(code, status_int),
        )
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return io_failure(exc)
    return KmsFailure(type(exc).__name__, "", None, None, False)


def _client_key(opts: Mapping[str, object]) -> tuple[str | None, str | None, str, str | None]:
    """ClientKey content or file, its password and the CA file, from the options or the
    environment (ConfigError where one is missing)."""
    content = option_str(opts, "client_key_content")
    key_file = option_str(opts, "client_key_file")
    if content is None and key_file is None:
        key_file = os.environ.get(_ENV + "CLIENT_KEY_FILE") or None
    if content is None and key_file is None:
        raise ConfigError(
            "alikms-instance:// keys need a ClientKey: kms_options['alikms-instance']"
            f"['client_key_file'] (or client_key_content) or {_ENV}CLIENT_KEY_FILE"
        )
    if key_file is not None and not os.path.isfile(key_file):
        raise ConfigError(f"ClientKey file {key_file} not found")
    password = option_str(opts, "client_key_password") or os.environ.get(
        _ENV + "CLIENT_KEY_PASSWORD"
    )
    if not password:
        raise ConfigError(
            "alikms-instance:// keys need the ClientKey password: kms_options"
            f"['alikms-instance']['client_key_password'] or {_ENV}CLIENT_KEY_PASSWORD"
        )
    ca_file = option_str(opts, "ca_file") or os.environ.get(_ENV + "CA_FILE") or None
    if ca_file is not None and not os.path.isfile(ca_file):
        raise ConfigError(f"CA file {ca_file} not found")
    return content, key_file, password, ca_file


class AliKmsInstanceProvider(KeyProvider):
    """Data keys from a KMS instance through its dedicated gateway (KMS Instance SDK)."""

    family = "alikms-instance"

    def __init__(self, uri: str, options: Mapping[str, object] | None = None) -> None:
        super().__init__(uri, options)
        self.key, opts, self.retry_deadline = setup(
            uri, self.options, "alikms-instance", _OPTIONS, "a key id: alikms-instance://KEY_ID"
        )

        endpoint = option_str(opts, "endpoint") or os.environ.get(_ENV + "ENDPOINT")
        if not endpoint:
            raise ConfigError(
                "alikms-instance:// keys need the instance endpoint: kms_options="
                "{'alikms-instance': {'endpoint': '<instance>.cryptoservice.kms.aliyuncs.com'}} "
                f"or {_ENV}ENDPOINT"
            )
        endpoint, protocol = split_endpoint(endpoint, option_str(opts, "protocol"))
        protocol = (protocol or "https").lower()
        if protocol not in ("http", "https"):
            raise ConfigError("kms_options['alikms-instance']['protocol'] must be http or https")
        content, key_file, password, ca_file = _client_key(opts)
        ignore_ssl = opts.get("ignore_ssl", False)
        if not isinstance(ignore_ssl, bool):
            raise ConfigError("kms_options['alikms-instance']['ignore_ssl'] must be a bool")
        self._connect_ms = int(seconds(opts, "connect_timeout", 5.0) * 1000)
        self._read_ms = int(seconds(opts, "read_timeout", 10.0) * 1000)

        config = _openapi_models.Config(
            endpoint=endpoint,
            protocol=protocol,
            client_key_content=content,
            client_key_file=key_file if content is None else None,
            password=password,
            ca_file_path=ca_file,
            ignore_ssl=ignore_ssl or None,
            connect_timeout=self._connect_ms,
            read_timeout=self._read_ms,
        )
        try:
            self.client = _sdk_client.Client(config)
        except Exception as exc:
            # never echo the exception text: it may quote the key file or password handling
            raise ConfigError(
                f"cannot load the alikms-instance ClientKey ({type(exc).__name__}): check the "
                "file, its content and the password"
            ) from None

    # -- helpers ---------------------------------------------------------------------------
    def _runtime(self) -> Any:
        return _util_models.RuntimeOptions(
            autoretry=False, connect_timeout=self._connect_ms, read_timeout=self._read_ms
        )

    def _call(self, operation: str, fn: Callable[[], T], key: str | None = None) -> T:
        def guarded() -> T:  # the SDK's DEBUG logs of this call carry no data key
            with kms_call(ALIBABA_LOGGERS):
                return fn()

        return call_with_retry(
            guarded,
            _classify,
            provider="alikms-instance",
            operation=operation,
            key=key or self.key,
            deadline=self.retry_deadline,
        )

    def _key(self, response: Any, operation: str) -> bytearray:
        plaintext = response.plaintext
        response.plaintext = None
        key = bytearray(plaintext or b"")
        del plaintext
        if len(key) != DATA_KEY_BYTES:
            raise KeyAccessError(
                f"alikms-instance {operation} with key {self.key} returned no "
                f"{DATA_KEY_BYTES}-byte data key [request id {response.request_id}]"
            )
        return key

    def _wrapped(self, response: Any) -> WrappedKey:
        if not response.ciphertext_blob or not response.iv:
            raise KeyAccessError(
                f"alikms-instance returned no ciphertext or IV for key {self.key} "
                f"[request id {response.request_id}]"
            )
        params = {
            "iv": base64.b64encode(bytes(response.iv)).decode("ascii"),
            "alg": str(response.algorithm or _DEFAULT_ALGORITHM),
        }
        return WrappedKey(
            self.family, str(response.key_id or self.key), bytes(response.ciphertext_blob), params
        )

    # -- KeyProvider -------------------------------------------------------------------------
    def matches(self, wrapped: WrappedKey) -> bool:
        if wrapped.provider != self.family:
            return False
        if self.key.startswith("alias/"):
            return True  # resolved by the instance
        return wrapped.key_id == self.key

    def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytearray, WrappedKey]:
        request = _sdk_models.GenerateDataKeyRequest(
            key_id=self.key, number_of_bytes=DATA_KEY_BYTES, aad=canonical_context(context)
        )
        response = self._call(
            "GenerateDataKey",
            lambda: self.client.generate_data_key_with_options(request, self._runtime()),
        )
        key = self._key(response, "GenerateDataKey")
        return key, self._wrapped(response)

    def wrap(self, data_key: bytes | bytearray, context: Mapping[str, str]) -> WrappedKey:
        if len(data_key) != DATA_KEY_BYTES:
            raise KeyAccessError(f"alikms-instance wrap needs a {DATA_KEY_BYTES}-byte data key")
        request = _sdk_models.EncryptRequest(
            key_id=self.key, plaintext=bytes(data_key), aad=canonical_context(context)
        )
        try:
            response = self._call(
                "Encrypt", lambda: self.client.encrypt_with_options(request, self._runtime())
            )
        finally:
            request.plaintext = None
        return self._wrapped(response)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytearray:
        if wrapped.provider != self.family:
            raise KeyAccessError(f"recipient is for {wrapped.provider}, not alikms-instance")
        try:
            iv = base64.b64decode(wrapped.params.get("iv", ""), validate=True)
        except (binascii.Error, ValueError):
            iv = b""
        if not iv:
            raise KeyAccessError("alikms-instance recipient has no valid 'iv' parameter")
        request = _sdk_models.DecryptRequest(
            key_id=self.key,  # the configured key (or alias): the instance refuses other keys
            ciphertext_blob=bytes(wrapped.blob),
            iv=iv,
            algorithm=wrapped.params.get("alg") or _DEFAULT_ALGORITHM,
            aad=canonical_context(context),
        )
        response = self._call(
            "Decrypt",
            lambda: self.client.decrypt_with_options(request, self._runtime()),
        )
        return self._key(response, "Decrypt")
