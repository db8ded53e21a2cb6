"""Local master keys (local:// and env://) and the key ring."""

from __future__ import annotations

import base64
import os
import pickle
import stat
from pathlib import Path

import pytest

from envstore import ConfigError, IntegrityError, KeyAccessError
from envstore.keys import get_provider
from envstore.keys.base import WrappedKey
from envstore.keys.local import LocalKeyProvider, default_key_path, keygen
from envstore.keys.ring import KeyRing, parse_key_cache


def test_keygen_writes_0600_and_refuses_overwrite(tmp_path: Path) -> None:
    path = keygen(tmp_path / "a" / "m.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_bytes().strip())) == 32
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        keygen(path)
    assert path.read_bytes() == before
    assert keygen() == default_key_path()  # XDG_CONFIG_HOME is a tmp dir in tests


def test_key_file_checks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="envstore keygen"):
        LocalKeyProvider(f"local://{tmp_path}/missing.key")
    with pytest.raises(ConfigError, match="absolute"):
        LocalKeyProvider("local://relative/path")
    loose = tmp_path / "loose.key"
    loose.write_bytes(base64.b64encode(os.urandom(32)))
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        LocalKeyProvider(f"local://{loose}")
    short = tmp_path / "short.key"
    short.write_bytes(base64.b64encode(os.urandom(16)))
    short.chmod(0o600)
    with pytest.raises(ConfigError, match="32-byte"):
        LocalKeyProvider(f"local://{short}")


def test_env_and_file_keys_are_the_same_key(tmp_path: Path, monkeypatch) -> None:
    path = keygen(tmp_path / "m.key")
    monkeypatch.setenv("ENVSTORE_TEST_KEY", path.read_text().strip())
    file_p = get_provider(f"local://{path}")
    env_p = get_provider("env://ENVSTORE_TEST_KEY")
    key, wrapped = file_p.generate_data_key({"a": "b"})
    assert env_p.matches(wrapped)
    assert env_p.unwrap(wrapped, {"a": "b"}) == key
    with pytest.raises(IntegrityError):
        env_p.unwrap(wrapped, {"a": "c"})
    monkeypatch.delenv("ENVSTORE_TEST_KEY")
    with pytest.raises(ConfigError, match="not set"):
        get_provider("env://ENVSTORE_TEST_KEY")


def test_wrong_key_is_key_access_error(tmp_path: Path) -> None:
    a = get_provider(f"local://{keygen(tmp_path / 'a.key')}")
    b = get_provider(f"local://{keygen(tmp_path / 'b.key')}")
    _key, wrapped = a.generate_data_key({})
    assert not b.matches(wrapped)
    with pytest.raises(KeyAccessError):
        b.unwrap(wrapped, {})


def test_no_key_bytes_in_reprs_errors_or_pickles(tmp_path: Path) -> None:
    path = keygen(tmp_path / "m.key")
    master = base64.b64decode(path.read_bytes())
    p = get_provider(f"local://{path}")
    key, wrapped = p.generate_data_key({})
    for text in (repr(p), repr(wrapped), wrapped.encode()):
        assert master.hex() not in text and bytes(key).hex() not in text
    with pytest.raises(TypeError):
        pickle.dumps(p)
    ring = KeyRing([f"local://{path}"])
    with pytest.raises(TypeError):
        pickle.dumps(ring)


def test_wrapped_key_encoding_round_trips() -> None:
    w = WrappedKey(
        "alikms-instance", "key/with;odd id", b"\x00\x01blob", {"iv": "AAA=", "alg": "AES_GCM"}
    )
    assert WrappedKey.decode(w.encode()) == w
    assert WrappedKey.decode(WrappedKey("local", "fp:1", b"x").encode()).params == {}


def test_ring_recipients_rotation_and_cache(tmp_path: Path) -> None:
    a = f"local://{keygen(tmp_path / 'a.key')}"
    b = f"local://{keygen(tmp_path / 'b.key')}"
    ring = KeyRing([a, b])
    key, recipients = ring.new_data_key({"t": "1"})
    assert len(recipients) == 2
    assert KeyRing([b]).open_data_key(recipients, {"t": "1"}) == key
    assert KeyRing([b], [a]).open_data_key(recipients[:1], {"t": "1"}) == key
    with pytest.raises(KeyAccessError, match="decrypt_key_uris"):
        KeyRing([b]).open_data_key(recipients[:1], {"t": "1"})
    cached = KeyRing([a], key_cache={"max_objects": 3})
    keys = [bytes(cached.new_data_key({}, 10)[0]) for _ in range(7)]
    assert len(set(keys)) == 3  # 3 + 3 + 1
    assert len(set(bytes(KeyRing([a]).new_data_key({})[0]) for _ in range(3))) == 3
    with pytest.raises(ConfigError):
        parse_key_cache({"max_objects": 0})
    with pytest.raises(ConfigError, match="unknown"):
        parse_key_cache({"ttl": 3})
