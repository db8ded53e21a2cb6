"""A key pasted where a key URI belongs is never echoed: not in errors, reprs, logs, stderr."""

from __future__ import annotations

import base64
import logging
import secrets
import traceback

import fsspec
import pytest
from click.testing import CliRunner

from envstore.cli import main
from envstore.errors import ConfigError
from envstore.keys import get_provider
from envstore.keys.ring import KeyRing
from envstore.keys.uri import describe_uri, looks_like_key, safe_uri

KEY = secrets.token_bytes(32)
B64 = base64.b64encode(KEY).decode()
URLSAFE = base64.urlsafe_b64encode(KEY).decode().rstrip("=")
HEX = KEY.hex()

PASTED = [
    B64,
    f"env://{B64}",
    f"local://{B64}",
    f"local:{B64}",
    f"local:///{B64}",
    f"env://{URLSAFE}",
    f"local://{HEX}",
    f"awskms://{B64}",
    f"alikms://{URLSAFE}",
    f"alikms-instance://{HEX}",
    f"{B64}\n",
]


def forms() -> list[str]:
    """Every text form of the key, and long pieces of them."""
    out = []
    for text in (B64, URLSAFE, HEX, base64.b32encode(KEY).decode()):
        out.append(text.rstrip("="))
        out.append(text[:20])  # a 20-character piece is as good as a leak
        out.append(text[-20:].rstrip("="))
    return [f for f in out if len(f) >= 16]


def assert_no_key(text: str) -> None:
    for form in forms():
        assert form not in text, f"key material {form!r} in {text!r}"


@pytest.mark.parametrize("uri", PASTED)
def test_filesystem_rejects_and_never_echoes(uri: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as info:
        fsspec.filesystem(
            "envstore", target_protocol="memory", key_uri=uri, skip_instance_cache=True
        )
    text = "".join(traceback.format_exception(info.value))
    assert_no_key(text + repr(info.value))
    assert_no_key(caplog.text)


@pytest.mark.parametrize("uri", PASTED)
def test_every_entry_point_rejects_without_echo(uri: str) -> None:
    for call in (
        lambda: get_provider(uri),
        lambda: fsspec.filesystem(
            "envstore", target_protocol="memory", decrypt_key_uris=[uri], skip_instance_cache=True
        ),
        lambda: KeyRing([uri]).new_data_key({}),
    ):
        with pytest.raises(ConfigError) as info:
            call()
        assert_no_key(str(info.value) + repr(info.value))


def test_environment_key_uri_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSSPEC_ENVSTORE_KEY_URI", f"env://{B64}")
    fs = fsspec.filesystem("envstore", target_protocol="memory", skip_instance_cache=True)
    with pytest.raises(ConfigError) as info:
        fs.pipe_file("/x", b"1")
    assert_no_key(str(info.value))


@pytest.mark.parametrize("uri", [f"env://{B64}", B64, f"local:{B64}"])
def test_cli_stderr_never_shows_the_key(uri: str, tmp_path) -> None:
    for args in (
        ["cp", str(tmp_path / "nothing"), f"envstore::file://{tmp_path}/o", "--key-uri", uri],
        ["--key-uri", uri, "ls", f"envstore::file://{tmp_path}"],
        ["-o", f"key_uri={uri}", "cat", f"envstore::file://{tmp_path}/o"],
        ["-o", uri, "ls", f"envstore::file://{tmp_path}"],  # the key typed as an option
        ["rewrap", f"envstore::file://{tmp_path}/o", "--to", uri],
    ):
        (tmp_path / "nothing").write_bytes(b"x")
        result = CliRunner().invoke(main, args)
        assert result.exit_code != 0
        assert_no_key(result.stderr + result.stdout)
        debug = CliRunner().invoke(main, ["--debug", *args])
        assert_no_key(debug.stderr + debug.stdout)


def test_rejections_describe_scheme_and_length() -> None:
    with pytest.raises(ConfigError, match=r"\d+-character key URI with scheme 'env'"):
        get_provider(f"env://{B64}")
    with pytest.raises(ConfigError, match="without a known scheme"):
        get_provider(f"local:{B64}")
    with pytest.raises(ConfigError, match=r"unknown key URI scheme.*'gcpkms'"):
        get_provider("gcpkms://k")
    assert describe_uri(None) == "a NoneType (not a key URI string)"


def test_references_are_not_taken_for_keys(tmp_path) -> None:
    refs = [
        "local:///home/me/.config/envstore/master.key",
        "local:///Users/JohnSmith/Library/Preferences2024/envstore/master.key",
        "env://ENVSTORE_MASTER_KEY",
        "awskms://alias/my-app-key",
        "awskms://1234abcd-12ab-34cd-56ef-1234567890ab",
        "awskms://arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "awskms://mrk-1234abcd12ab34cd56ef1234567890ab",
        "alikms://key-hzz62f1cb66fa42qo0cz3",
        "alikms-instance://key-hzz6-6qbtq0d2ra4vp3hhj",
        f"local://{tmp_path}/{'a' * 64}.key",
    ]
    for uri in refs:
        assert not looks_like_key(uri), uri
        assert safe_uri(uri) == uri


def test_reprs_hide_pasted_keys() -> None:
    ring = KeyRing([f"env://{B64}"], [f"local:{B64}"])
    assert_no_key(repr(ring))
    assert "env" in repr(ring)
