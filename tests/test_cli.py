"""The envstore CLI through click's runner, and real subprocesses of the console script."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import envstore
from envstore.cli import main
from envstore.keys.local import default_key_path, keygen
from envstore.transfer import open_url


def run(*args: str, code: int = 0, env: dict[str, str] | None = None) -> Result:
    result = CliRunner(env=env).invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    return result


def one_error_line(result: Result) -> str:
    """The single ``envstore: error: ...`` line of a failed command (no traceback)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("envstore: error: "), result.stderr
    return lines[0]


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.bin": os.urandom(40_000),
        "e": b"",
        "d1/d2/c.txt": b"hello\n",
        "d1/empty": b"",
        "d1/d2/d3/big.bin": os.urandom(3 * 16384 + 5),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "d1" / "empty-dir").mkdir()
    return files


def secrets_of(key_path: Path, url: str, key_uri: str) -> list[str]:
    """Text forms of the master key and of the object's data key that must never show up."""
    line = key_path.read_text().strip()
    master = base64.b64decode(line)
    fs, path = open_url(url, key_uri=key_uri, skip_instance_cache=True)
    env = fs.envelope(path).envelope
    data_key = bytes(fs.ring.open_data_key(env.recipients, env.context))
    forms = [line]
    for raw in (master, data_key):
        forms += [
            raw.hex(),
            base64.b64encode(raw).decode().rstrip("="),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
        ]
    return forms


def test_keygen_default_path_mode_and_refusal(tmp_path: Path) -> None:
    out = run("keygen")
    assert str(default_key_path()) in out.stdout
    assert stat.S_IMODE(default_key_path().stat().st_mode) == 0o600
    path = tmp_path / "k.key"
    run("keygen", str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    refused = run("keygen", str(path), code=1)
    assert "refusing to overwrite" in one_error_line(refused)
    assert path.read_bytes() == before


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_cp_tree_round_trip(
    tmp_path: Path, key_uri: str, key_path: Path, memroot: str, scheme: str
) -> None:
    files = make_tree(tmp_path / "src")
    remote = (
        f"envstore::file://{tmp_path}/remote"
        if scheme == "file"
        else f"envstore::memory://{memroot}/remote"
    )
    up = run("cp", "-r", "--jobs", "3", "--key-uri", key_uri, str(tmp_path / "src"), remote)
    assert up.stdout == "" and up.stderr == ""  # quiet when not on a terminal
    back = tmp_path / "back"
    run("cp", "-r", "--key-uri", key_uri, remote, str(back))
    got = {p.relative_to(back).as_posix(): p.read_bytes() for p in back.rglob("*") if p.is_file()}
    assert got == files
    if scheme == "file":
        assert (back / "d1" / "empty-dir").is_dir()
        for path in (tmp_path / "remote").rglob("*"):
            if path.is_file():
                assert path.read_bytes().startswith(envstore.format.MAGIC)

    listing = json.loads(run("ls", "--json", remote).stdout)
    sizes = {Path(e["name"]).name: e["size"] for e in listing if e["type"] == "file"}
    assert sizes == {"a.bin": 40_000, "e": 0}
    assert all(
        e["encrypted"] and e["stored_size"] > e["size"] for e in listing if e["type"] == "file"
    )
    long = run("ls", "-l", remote).stdout
    assert "encrypted" in long and " 40000 " in long and "dir" in long
    deep = json.loads(run("ls", "--json", f"{remote}/d1/d2/d3").stdout)
    assert [e["size"] for e in deep] == [3 * 16384 + 5]
    info = json.loads(run("inspect", "--json", f"{remote}/a.bin").stdout)
    assert info["plaintext_size"] == 40_000 and info["format_version"] == 1
    assert info["recipients"][0]["provider"] == "local" and info["recipients"][0]["key_id"]
    text = run("inspect", f"{remote}/a.bin").stdout
    for output in (json.dumps(listing), json.dumps(info), long, text):
        for secret in secrets_of(key_path, f"{remote}/a.bin", key_uri):
            assert secret not in output


def test_cat_verify_and_errors(tmp_path: Path, key_uri: str, other_key_uri: str) -> None:
    (tmp_path / "in.txt").write_bytes(b"line one\nline two\n")
    store = f"envstore::file://{tmp_path}/store"
    run("cp", "--key-uri", key_uri, str(tmp_path / "in.txt"), f"{store}/in.txt")
    (tmp_path / "x").write_bytes(os.urandom(70_000))
    run("cp", "--key-uri", key_uri, str(tmp_path / "x"), f"{store}/x")
    assert run("cat", "--key-uri", key_uri, f"{store}/in.txt").stdout == "line one\nline two\n"
    assert (
        run("cat", "--key-uri", key_uri, f"{store}/x").stdout_bytes == (tmp_path / "x").read_bytes()
    )

    bad_key = run("cat", "--key-uri", other_key_uri, f"{store}/in.txt", code=1)
    assert one_error_line(bad_key).startswith("envstore: error: KeyAccessError: ")
    assert bad_key.stdout == ""
    (tmp_path / "store" / "plain.csv").write_bytes(b"a,b\n")
    plain = run("cat", "--key-uri", key_uri, f"{store}/plain.csv", code=1)
    assert "NotEncryptedError" in one_error_line(plain)
    assert "not envstore-encrypted" in one_error_line(plain) and plain.stdout == ""
    missing = run("cat", "--key-uri", key_uri, f"{store}/nope", code=1)
    assert "FileNotFoundError" in one_error_line(missing) and "nope" in missing.stderr
    (tmp_path / "store" / "plain.csv").unlink()

    ok = run("verify", "-r", "--key-uri", key_uri, store)
    assert ok.stdout.count("ok ") == 2
    victim = tmp_path / "store" / "x"
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x10  # one flipped bit in a middle chunk
    victim.write_bytes(bytes(raw))
    res = run("verify", "-r", "--key-uri", key_uri, store, code=1)
    assert f"FAIL  {tmp_path}/store/x: IntegrityError" in res.stdout
    assert f"ok    {tmp_path}/store/in.txt" in res.stdout
    assert "1 of 2 object(s) failed" in one_error_line(res) and "/store/x" in res.stderr
    single = run("verify", "--key-uri", key_uri, f"{store}/x", code=1)
    assert "FAIL" in single.stdout


def test_bad_key_configurations_are_one_line(tmp_path: Path, key_uri: str) -> None:
    (tmp_path / "f").write_bytes(b"data")
    url = f"envstore::file://{tmp_path}/s/f"
    run("cp", "--key-uri", key_uri, str(tmp_path / "f"), url)
    for bad in ("local:///nonexistent.key", "local://relative", "nosuch://x", "env://UNSET_VAR"):
        res = run("cat", "--key-uri", bad, url, code=1)
        assert "ConfigError" in one_error_line(res)
    no_key = run("cat", url, code=1)  # nothing configured, no default key
    assert "envstore keygen" in one_error_line(no_key)


def test_rewrap_replace_add_and_rerun(tmp_path: Path, key_uri: str) -> None:
    new = f"local://{keygen(tmp_path / 'new.key')}"
    data = os.urandom(50_000)
    (tmp_path / "x").write_bytes(data)
    url = f"envstore::file://{tmp_path}/s/x"
    run("cp", "--key-uri", key_uri, str(tmp_path / "x"), url)
    body = (tmp_path / "s" / "x").read_bytes()[-50_000:]
    out = run("rewrap", "--key-uri", key_uri, "--to", new, url).stdout
    assert out == f"rewrapped  {tmp_path}/s/x\n"
    assert (tmp_path / "s" / "x").read_bytes()[-50_000:] == body  # body bytes unchanged
    assert "KeyAccessError" in one_error_line(run("cat", "--key-uri", key_uri, url, code=1))
    assert run("cat", "--key-uri", new, url).stdout_bytes == data
    again = run("rewrap", "--key-uri", key_uri, "--to", new, url).stdout  # a re-run is a no-op
    assert again.startswith("unchanged")
    run("rewrap", "--key-uri", new, "--to", key_uri, "--add", url)
    run("rewrap", "--key-uri", new, "--to", key_uri, "--add", url)  # not added twice
    assert len(json.loads(run("inspect", "--json", url).stdout)["recipients"]) == 2
    for uri in (key_uri, new):
        assert run("cat", "--key-uri", uri, url).stdout_bytes == data


def test_usage_errors_exit_2(tmp_path: Path, key_uri: str) -> None:
    runner = CliRunner()
    url = "envstore::memory://x"
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    for args in (
        ["cp", str(tmp_path), str(tmp_path)],
        ["cp", url, url],
        ["cp", "s3://bucket/key", url],
        ["cp", "--jobs", "0", str(tmp_path), url],
        ["nosuchcommand"],
        ["cat"],
        ["cat", "-o", "novalue", url],
        ["cat", "-o", "=x", url],
        ["cat", "--context", "novalue", url],
        ["cat", "--options-file", str(tmp_path / "bad.json"), url],
        ["cat", "--options-file", str(tmp_path / "list.json"), url],
        ["cat", "--options-file", str(tmp_path / "missing.json"), url],
        ["rewrap", url],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_storage_options_files_nesting_and_global_flags(tmp_path: Path, key_uri: str) -> None:
    (tmp_path / "f").write_bytes(b"nested")
    opts = tmp_path / "opts.json"
    opts.write_text(json.dumps({"key_uri": key_uri, "context": {"team": "a"}}))
    url = f"envstore::file://{tmp_path}/deep/er/f"
    run("cp", "--options-file", str(opts), "--context", "run=7", str(tmp_path / "f"), url)
    assert json.loads(run("inspect", "--json", url).stdout)["context"] == {"team": "a", "run": "7"}
    assert run("cat", "-o", f"key_uri={key_uri}", url).stdout == "nested"
    assert run("--key-uri", key_uri, "cat", url).stdout == "nested"  # global form
    toml = tmp_path / "opts.toml"
    toml.write_text(f'key_uri = "{key_uri}"\n[file]\nauto_mkdir = true\n')
    assert run("cat", "--options-file", str(toml), url).stdout == "nested"
    assert run("cat", "-o", "file.auto_mkdir=true", "--key-uri", key_uri, url).stdout == "nested"
    res = run("cat", "--key-uri", key_uri, "-o", "endpoint_url=http://x", url, code=1)
    assert "ConfigError" in one_error_line(res) and '"file": {' in res.stderr
    # command flags win over global ones
    assert run("--key-uri", "local:///nope.key", "cat", "--key-uri", key_uri, url).stdout == (
        "nested"
    )


def test_fsspec_config_from_the_environment(tmp_path: Path, key_uri: str) -> None:
    (tmp_path / "f").write_bytes(b"from env")
    url = f"envstore::file://{tmp_path}/s/f"
    run("cp", str(tmp_path / "f"), url, env={"FSSPEC_ENVSTORE_KEY_URI": key_uri})
    assert run("cat", url, env={"FSSPEC_ENVSTORE_KEY_URI": key_uri}).stdout == "from env"


def test_progress_bar_and_summary_on_request(tmp_path: Path, key_uri: str) -> None:
    (tmp_path / "f").write_bytes(os.urandom(100_000))
    res = run(
        "cp", "--progress", "--key-uri", key_uri, str(tmp_path / "f"), "envstore::memory://p/f"
    )
    assert "copied 1 file(s)" in res.stderr and "encrypt" in res.stderr and res.stdout == ""


def test_unexpected_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(url: str, **options: object) -> dict:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("envstore.transfer.inspect", boom)
    res = run("inspect", "envstore::memory://x", code=1)
    assert one_error_line(res) == (
        "envstore: error: RuntimeError: boom second line (--debug shows the traceback)"
    )
    debug = run("--debug", "inspect", "envstore::memory://x", code=1)
    assert "Traceback" in debug.stderr and debug.stderr.endswith("boom second line\n")


def test_demo_without_pandas_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pandas")  # imported for real first: nothing caches a missing pyarrow
    pytest.importorskip("pyarrow")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    res = run("demo", code=1)
    assert "pyarrow" in one_error_line(res) and "envstore[demo]" in res.stderr


def test_demo_keep_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x")
    assert "not empty" in one_error_line(run("demo", "--keep", str(tmp_path / "used"), code=1))


def _script() -> list[str]:
    """The installed console script when it runs this checkout, else ``python -m``."""
    exe = shutil.which("envstore")
    if exe:
        probe = subprocess.run(
            [sys.executable, "-c", "import envstore, sys; sys.stdout.write(envstore.__file__)"],
            capture_output=True,
            text=True,
            cwd="/",
        )
        if Path(probe.stdout).resolve().parent == Path(envstore.__file__).resolve().parent:
            return [exe]
    return [sys.executable, "-m", "envstore.cli"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSSPEC_ENVSTORE")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    repo = str(Path(envstore.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    return env


def test_console_script_demo(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*_script(), "demo", "--keep", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ciphertext" in proc.stdout and "equal to the original" in proc.stdout
    assert not (tmp_path / "xdg" / "envstore").exists()  # the user's default key untouched
    raw = (tmp_path / "demo" / "store" / "sales.parquet").read_bytes()
    assert raw.startswith(envstore.format.MAGIC) and b"PAR1" not in raw
    assert b"customer-0" not in (tmp_path / "demo" / "store" / "sales.csv").read_bytes()
    key_line = (tmp_path / "demo" / "master.key").read_text().strip()
    assert key_line not in proc.stdout


def test_console_script_errors_and_debug(tmp_path: Path, key_uri: str) -> None:
    (tmp_path / "plain.txt").write_text("not encrypted")
    url = f"envstore::file://{tmp_path}/plain.txt"
    args = [*_script(), "cat", "--key-uri", key_uri, url]
    proc = subprocess.run(args, capture_output=True, text=True, env=_env(tmp_path), timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"envstore: error: NotEncryptedError: {tmp_path}/plain.txt is not envstore-encrypted "
        "(no envelope)"
    ]
    args.insert(len(_script()), "--debug")
    proc = subprocess.run(args, capture_output=True, text=True, env=_env(tmp_path), timeout=60)
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    usage = subprocess.run(
        [*_script(), "cp", "a", "b"], capture_output=True, text=True, env=_env(tmp_path)
    )
    assert usage.returncode == 2 and "Usage:" in usage.stderr


def _make_cli_bucket(url: str) -> None:
    boto3 = pytest.importorskip("boto3")
    client = boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region_name="us-east-1",
    )
    try:
        client.head_bucket(Bucket="cli")
    except client.exceptions.ClientError:
        client.create_bucket(Bucket="cli")


@pytest.fixture(scope="module", params=["moto", "seaweedfs"])
def moto_s3(request: pytest.FixtureRequest) -> Iterator[str]:
    """An S3 server on 127.0.0.1 with a bucket ``cli`` (moto, or the session's SeaweedFS);
    yields its endpoint URL."""
    pytest.importorskip("s3fs")
    if request.param == "seaweedfs":
        url = request.getfixturevalue("seaweedfs").s3_url
        _make_cli_bucket(url)
        yield url
        return
    url = request.getfixturevalue("moto_server")  # the session's one moto server
    _make_cli_bucket(url)
    yield url


def test_cp_tree_round_trip_on_s3(
    tmp_path: Path, key_uri: str, moto_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    files = make_tree(tmp_path / "src")
    prefix = f"envstore::s3://cli/{tmp_path.name}"
    so = ["--key-uri", key_uri, "-o", f"s3.endpoint_url={moto_s3}"]
    so += ["-o", "s3.key=k", "-o", "s3.secret=s", "-o", "s3.skip_instance_cache=true"]
    run("cp", "-r", *so, str(tmp_path / "src"), prefix)
    run("cp", "-r", *so, prefix, str(tmp_path / "back"))
    back = tmp_path / "back"
    got = {p.relative_to(back).as_posix(): p.read_bytes() for p in back.rglob("*") if p.is_file()}
    assert got == files
    listing = json.loads(run("ls", "--json", *so, f"{prefix}/d1").stdout)
    assert {Path(e["name"]).name: e.get("size") for e in listing if e["type"] == "file"} == {
        "empty": 0
    }
    info = json.loads(run("inspect", "--json", *so, f"{prefix}/a.bin").stdout)
    assert info["placement"] == "metadata" and info["plaintext_size"] == 40_000
    assert run("verify", "-r", *so, prefix).stdout.count("ok ") == len(files)
