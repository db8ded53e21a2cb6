"""A key pasted where a key URI belongs is never echoed: not in errors, reprs, logs, stderr."""

from __future__ import annotations

import base64
import logging
import random
import secrets
import traceback

import fsspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    pytest.importorskip("click")  # the cli extra (CI's cryptography-41 environment has none)
    from click.testing import CliRunner

    from envstore.cli import main

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


# -- the detector in both directions (review holes 6 and 9) ------------------------------------

_WORD = st.from_regex(r"[a-z]{2,9}", fullmatch=True)
_SCHEMES = ["", "env://", "local://", "local:///", "local:", "awskms://", "alikms://", "rsa://"]


def _camel(words: list[str], lower_first: bool, tail: str) -> str:
    head = words[0] if lower_first else words[0].capitalize()
    return head + "".join(w.capitalize() for w in words[1:]) + tail


_TAILS = st.from_regex(r"[A-Z]?[0-9]{0,4}", fullmatch=True)
_ENV_NAMES = st.one_of(
    st.lists(_WORD, min_size=1, max_size=9).map(lambda ws: "_".join(ws).upper()),
    st.lists(_WORD, min_size=1, max_size=9).map("_".join),
    st.builds(
        lambda ws, d: "_".join(ws).upper() + d,
        st.lists(_WORD, min_size=1, max_size=9),
        st.from_regex(r"(_[A-Z0-9]{1,4}){0,3}", fullmatch=True),
    ),
    st.builds(_camel, st.lists(_WORD, min_size=1, max_size=9), st.booleans(), _TAILS),
)
_PARTS = st.one_of(
    _WORD,
    st.builds(_camel, st.lists(_WORD, min_size=1, max_size=6), st.booleans(), _TAILS),
    _WORD.map(str.upper),
)
_ALIASES = st.lists(_PARTS, min_size=1, max_size=4).map(lambda ps: "alias/" + "-".join(ps))
_PATHS = st.builds(
    lambda parts, ext: "/" + "/".join(parts) + ext,
    st.lists(st.one_of(_PARTS, _ENV_NAMES), min_size=1, max_size=6),
    st.sampled_from(["", ".key", ".b64", ".pem"]),
)
_AWS_IDS = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: "mrk-" + u.hex),
    st.builds(
        lambda region, acct, tail: f"arn:aws:kms:{region}:{acct}:{tail}",
        st.sampled_from(["us-east-1", "eu-west-3", "cn-north-1"]),
        st.from_regex(r"[0-9]{12}", fullmatch=True),
        st.one_of(st.uuids().map(lambda u: f"key/{u}"), _ALIASES),
    ),
    _ALIASES,
)
_ALI_IDS = st.from_regex(r"(key|alias)-[a-z0-9]{4,40}", fullmatch=True)


@given(
    st.one_of(
        _ENV_NAMES.map(lambda n: f"env://{n}"),
        _PATHS.map(lambda p: f"local://{p}"),
        _PATHS.map(lambda p: f"rsa://{p}"),
        _AWS_IDS.map(lambda k: f"awskms://{k}"),
        _ALI_IDS.map(lambda k: f"alikms://{k}"),
        _ALI_IDS.map(lambda k: f"alikms-instance://{k}"),
    )
)
@settings(max_examples=400, deadline=None)
def test_references_are_never_taken_for_keys(uri: str) -> None:
    """Variable names (of any length: 43 characters of ``[A-Za-z0-9_]`` decode as url-safe
    base64 to 32 bytes), paths, KMS key ids, ARNs and aliases are references."""
    assert not looks_like_key(uri)
    assert safe_uri(uri) == uri


def _hex_forms(key: bytes) -> list[str]:
    h = key.hex()
    pairs = [h[i : i + 2] for i in range(0, 64, 2)]
    return [
        h,
        h.upper(),
        "0x" + h,
        "0X" + h.upper(),
        ":".join(pairs),
        ":".join(pairs).upper(),
        " ".join(pairs),
        "-".join(pairs),
        h[:32] + "\n" + h[32:],
        ", ".join("0x" + p for p in pairs),
        "".join("\\x" + p for p in pairs),
    ]


def _b64_forms(key: bytes, cut: int) -> list[str]:
    std, url = base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode()
    out = []
    for text in (std, url):
        out += [text, text.rstrip("="), f"'{text}'", f'"{text}"', text[:cut] + "\n" + text[cut:]]
    return out


@given(
    st.integers(0, 2**64),
    st.integers(1, 42),
    st.sampled_from(_SCHEMES),
    st.sampled_from(["", "\n", "  "]),
)
@settings(max_examples=300, deadline=None)
def test_pasted_keys_are_always_caught(seed: int, cut: int, scheme: str, pad: str) -> None:
    """Every text form of a (random) 32-byte key, bare or after a scheme, is a key; and
    hex forms for any bytes at all (all zeros included)."""
    key = random.Random(seed).randbytes(32)
    for form in _hex_forms(key) + _hex_forms(bytes(32)) + _b64_forms(key, cut):
        assert looks_like_key(f"{scheme}{form}{pad}"), (scheme, form)


def test_random_keys_are_not_names() -> None:
    """The name rule lets a random key through with probability about 3e-7 (url-safe,
    unpadded: the worst form); 20,000 keys in that form are all caught."""
    rnd = random.Random(9)
    for _ in range(20_000):
        text = base64.urlsafe_b64encode(rnd.randbytes(32)).decode().rstrip("=")
        assert looks_like_key(f"env://{text}"), text


@pytest.mark.parametrize(
    "uri",
    [
        f"env://0x{HEX}",
        f"local:///0x{HEX}",
        "env://" + ":".join(HEX[i : i + 2] for i in range(0, 64, 2)),
        f"awskms://0x{HEX}",
        f"env://'{B64}'",
        "env://" + B64[:20] + "\n" + B64[20:],
        "env://" + B64.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D"),
    ],
    ids=["env-0x", "local-0x", "env-colons", "awskms-0x", "quoted", "split", "url-encoded"],
)
def test_pasted_key_variants_rejected_without_echo(uri: str) -> None:
    """0x / colon / split / quoted / URL-encoded forms: refused by every entry point, and
    the message shows no form of the key."""
    for call in (
        lambda: get_provider(uri),
        lambda: fsspec.filesystem(
            "envstore", target_protocol="memory", key_uri=uri, skip_instance_cache=True
        ),
    ):
        with pytest.raises(ConfigError) as info:
            call()
        text = "".join(traceback.format_exception(info.value))
        assert_no_key(text)
        assert ":".join(HEX[i : i + 2] for i in range(0, 64, 2))[:20] not in text


def test_long_names_work_as_references(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A 43-character variable name and a path of that shape are used, not refused."""
    name = "ENVSTORE_MASTER_KEY_FOR_PRODUCTION_TENANT_A"
    monkeypatch.setenv(name, B64)
    assert get_provider(f"env://{name}").key_id.startswith("fp:")
    monkeypatch.setenv("ProductionDataEncryptionKeyForTenantAlpha12", B64)
    assert get_provider("env://ProductionDataEncryptionKeyForTenantAlpha12")
