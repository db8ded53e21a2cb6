"""The envstore CLI through click's runner and one real subprocess of the console script."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from envstore.cli import main
from envstore.keys.local import default_key_path, keygen


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, (
        result.output,
        result.stderr if hasattr(result, "stderr") else "",
    )
    return result


def tree(root: Path) -> dict[str, bytes]:
    files = {"a.bin": os.urandom(40_000), "e": b"", "d1/d2/c.txt": b"hello\n", "d1/empty": b""}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_keygen_default_and_refusal(tmp_path: Path) -> None:
    out = run("keygen")
    assert str(default_key_path()) in out.output
    assert stat.S_IMODE(default_key_path().stat().st_mode) == 0o600
    path = tmp_path / "k.key"
    run("keygen", str(path))
    before = path.read_bytes()
    res = run("keygen", str(path), code=1)
    assert "refusing to overwrite" in res.output and res.output.count("\n") == 1
    assert path.read_bytes() == before


def test_cp_recursive_both_ways_ls_inspect(
    tmp_path: Path, key_uri: str, key_path: Path, memroot: str
) -> None:
    files = tree(tmp_path / "src")
    for remote in (f"envstore::file://{tmp_path}/remote", f"envstore::memory://{memroot}/r"):
        run("cp", "-r", "--jobs", "2", "--key-uri", key_uri, str(tmp_path / "src"), remote)
        back = tmp_path / f"back-{abs(hash(remote))}"
        run("cp", "-r", "--key-uri", key_uri, remote, str(back))
        for rel, data in files.items():
            assert (back / rel).read_bytes() == data
    listing = json.loads(run("ls", "--json", f"envstore::file://{tmp_path}/remote").output)
    sizes = {Path(e["name"]).name: e["size"] for e in listing if e["type"] == "file"}
    assert sizes == {"a.bin": 40_000, "e": 0}
    assert all(e["encrypted"] for e in listing if e["type"] == "file")
    long = run("ls", "-l", f"envstore::file://{tmp_path}/remote").output
    assert "encrypted" in long and "40000" in long
    info = json.loads(run("inspect", "--json", f"envstore::file://{tmp_path}/remote/a.bin").output)
    assert info["plaintext_size"] == 40_000 and info["recipients"][0]["provider"] == "local"
    secret = key_path.read_text().strip()
    master = base64.b64decode(secret)
    for text in (json.dumps(listing), json.dumps(info), long):
        assert secret not in text and master.hex() not in text


def test_cat_verify_and_errors(tmp_path: Path, key_uri: str, other_key_uri: str) -> None:
    (tmp_path / "in.txt").write_bytes(b"line one\nline two\n")
    url = f"envstore::file://{tmp_path}/store/in.txt"
    run("cp", "--key-uri", key_uri, str(tmp_path / "in.txt"), url)
    assert run("cat", "--key-uri", key_uri, url).output == "line one\nline two\n"
    bad_key = run("cat", "--key-uri", other_key_uri, url, code=1)
    assert (
        bad_key.output.startswith("envstore: error: KeyAccessError")
        and bad_key.output.count("\n") == 1
    )
    (tmp_path / "store" / "plain.csv").write_bytes(b"a,b\n")
    plain = run("cat", "--key-uri", key_uri, f"envstore::file://{tmp_path}/store/plain.csv", code=1)
    assert "NotEncryptedError" in plain.output and "not envstore-encrypted" in plain.output
    missing = run("cat", "--key-uri", key_uri, f"envstore::file://{tmp_path}/store/nope", code=1)
    assert "FileNotFoundError" in missing.output
    (tmp_path / "store" / "plain.csv").unlink()
    assert (
        "ok"
        in run("verify", "-r", "--key-uri", key_uri, f"envstore::file://{tmp_path}/store").output
    )
    victim = tmp_path / "store" / "in.txt"
    raw = bytearray(victim.read_bytes())
    raw[-5] ^= 0x10
    victim.write_bytes(bytes(raw))
    res = run("verify", "-r", "--key-uri", key_uri, f"envstore::file://{tmp_path}/store", code=1)
    assert "FAIL" in res.output and "in.txt" in res.output


def test_rewrap_cli(tmp_path: Path, key_uri: str) -> None:
    new = f"local://{keygen(tmp_path / 'new.key')}"
    (tmp_path / "x").write_bytes(b"data")
    url = f"envstore::file://{tmp_path}/s/x"
    run("cp", "--key-uri", key_uri, str(tmp_path / "x"), url)
    run("rewrap", "--key-uri", key_uri, "--to", new, url)
    run("cat", "--key-uri", key_uri, url, code=1)
    assert run("cat", "--key-uri", new, url).output == "data"
    run("rewrap", "--key-uri", new, "--to", key_uri, "--add", url)
    assert run("cat", "--key-uri", key_uri, url).output == "data"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert CliRunner().invoke(main, ["cp", str(tmp_path), str(tmp_path)]).exit_code == 2
    assert CliRunner().invoke(main, ["nosuchcommand"]).exit_code == 2
    assert CliRunner().invoke(main, ["cat", "-o", "novalue", "envstore::memory://x"]).exit_code == 2


def test_storage_options_nesting(tmp_path: Path, key_uri: str) -> None:
    (tmp_path / "f").write_bytes(b"nested")
    opts = tmp_path / "opts.json"
    opts.write_text(json.dumps({"key_uri": key_uri, "file": {"auto_mkdir": True}}))
    url = f"envstore::file://{tmp_path}/deep/er/f"
    run("cp", "--options-file", str(opts), str(tmp_path / "f"), url)
    assert run("cat", "-o", f"key_uri={key_uri}", url).output == "nested"
    res = run("cat", "--key-uri", key_uri, "-o", "endpoint_url=http://x", url, code=1)
    assert "ConfigError" in res.output


def test_console_script_demo(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run(
        [sys.executable, "-m", "envstore.cli", "demo", "--keep", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ciphertext" in proc.stdout and "equal" in proc.stdout
    assert not (tmp_path / "xdg" / "envstore").exists()  # the user's default key untouched
    raw = (tmp_path / "demo" / "store" / "sales.parquet").read_bytes()
    assert b"PAR1" not in raw


@pytest.mark.parametrize("flag", ["--debug"])
def test_debug_shows_traceback(tmp_path: Path, flag: str) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run(
        [sys.executable, "-m", "envstore.cli", flag, "cat", f"envstore::file://{tmp_path}/none"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" in proc.stderr
