"""CLI manners through the installed console script: broken pipes, ``ls`` fields and states,
``rewrap -r`` progress and ``--skip-plain``, ``keygen --print``."""

from __future__ import annotations

import base64
import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

import envstore
from envstore.format import body_size
from envstore.fs import EnvstoreFileSystem
from tests import test_cli as cli

moto_s3 = cli.moto_s3  # the module-scoped moto server fixture (bucket "cli")


def script(tmp_path: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli._script(), *args],
        capture_output=True,
        text=True,
        env=kw.pop("env", None) or cli._env(tmp_path),  # type: ignore[arg-type]
        timeout=120,
        **kw,  # type: ignore[call-overload]
    )


# -- broken pipes ------------------------------------------------------------------------------


def _read_one_line_and_close(tmp_path: Path, *args: str) -> tuple[int, bytes, bytes]:
    proc = subprocess.Popen(
        [*cli._script(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli._env(tmp_path),
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    err = proc.stderr.read()
    return proc.wait(timeout=120), first, err


@pytest.mark.parametrize(
    "command", [["ls"], ["ls", "-l"], ["ls", "--json"], ["cat"], ["cat", "--big"]]
)
def test_broken_pipe_exits_0_without_a_message(
    tmp_path: Path, key_uri: str, command: list[str]
) -> None:
    tree = tmp_path / "many"
    tree.mkdir()
    for i in range(1500):  # far more than a pipe buffer holds
        (tree / f"{i:05d}-{'x' * 80}").touch()
    data = os.urandom(300_000 if "--big" not in command else 3_000_000)
    EnvstoreFileSystem(target_protocol="file", key_uri=key_uri).pipe_file(
        str(tmp_path / "obj"), data
    )
    target = tmp_path / ("obj" if command[0] == "cat" else "many")
    args = [c for c in command if c != "--big"]
    code, first, err = _read_one_line_and_close(
        tmp_path, *args, "--key-uri", key_uri, f"envstore::file://{target}"
    )
    assert first  # it did write
    assert (code, err) == (0, b"")


def test_a_broken_pipe_to_the_store_is_an_error(
    tmp_path: Path, key_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*a: object, **k: object) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(EnvstoreFileSystem, "ls", broken)
    out = cli.run("ls", "--key-uri", key_uri, f"envstore::file://{tmp_path}", code=1)
    assert "BrokenPipeError" in cli.one_error_line(out)


# -- ls ----------------------------------------------------------------------------------------


def test_ls_json_entries_have_every_field(tmp_path: Path, key_uri: str) -> None:
    store = tmp_path / "store"
    fs = EnvstoreFileSystem(target_protocol="file", key_uri=key_uri)
    fs.pipe_file(str(store / "enc"), b"x" * 1000)
    (store / "plain").write_bytes(b"hello")
    (store / "broken").write_bytes((store / "enc").read_bytes()[:40])  # a cut-off header
    (store / "sub").mkdir()
    url = f"envstore::file://{store}"
    proc = script(tmp_path, "ls", "--json", url)
    assert proc.returncode == 0, proc.stderr
    entries = {Path(e["name"]).name: e for e in json.loads(proc.stdout)}
    keys = ["name", "type", "size", "stored_size", "encrypted", "error"]
    assert all(list(e) == keys for e in entries.values())
    assert entries["enc"]["encrypted"] is True and entries["enc"]["error"] is None
    assert entries["enc"]["size"] == 1000 and entries["enc"]["stored_size"] > 1000
    assert entries["plain"]["encrypted"] is False and entries["plain"]["error"] is None
    assert entries["broken"]["error"] and "FormatError" not in entries["broken"]["name"]
    assert entries["sub"]["type"] == "directory" and entries["sub"]["error"] is None
    long = script(tmp_path, "ls", "-l", url).stdout.splitlines()
    states = {line.split()[2].rstrip("/").rsplit("/", 1)[-1]: line.split()[0] for line in long}
    assert states == {"broken": "error", "enc": "encrypted", "plain": "plain", "sub": "dir"}


def test_ls_on_s3_says_unknown_where_the_listing_cannot_tell(
    tmp_path: Path, key_uri: str, moto_s3: str
) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=moto_s3,
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region_name="us-east-1",
    )
    prefix = f"{tmp_path.name}-ls"
    client.put_object(Bucket="cli", Key=f"{prefix}/plain.bin", Body=b"p" * body_size(100))
    env = cli._env(tmp_path)
    env.update(FSSPEC_S3_ENDPOINT_URL=moto_s3, FSSPEC_S3_KEY="k", FSSPEC_S3_SECRET="s")
    env.update(AWS_DEFAULT_REGION="us-east-1")
    src = tmp_path / "enc"
    src.write_bytes(b"e" * 100)
    url = f"envstore::s3://cli/{prefix}"
    assert (
        script(tmp_path, "cp", "--key-uri", key_uri, str(src), f"{url}/enc", env=env).returncode
        == 0
    )
    long = script(tmp_path, "ls", "-l", url, env=env)
    assert long.returncode == 0, long.stderr
    assert [line.split()[0] for line in long.stdout.splitlines()] == ["unknown", "unknown"]
    listed = json.loads(script(tmp_path, "ls", "--json", url, env=env).stdout)
    assert [e["encrypted"] for e in listed] == [None, None]
    assert [e["size"] for e in listed] == [100, 100]  # computed from the stored sizes
    one = json.loads(script(tmp_path, "ls", "--json", f"{url}/plain.bin", env=env).stdout)
    assert one[0]["encrypted"] is None  # still a listing
    info = json.loads(script(tmp_path, "inspect", "--json", f"{url}/enc", env=env).stdout)
    assert info["plaintext_size"] == 100


# -- rewrap -r ---------------------------------------------------------------------------------


def test_rewrap_tree_with_plain_objects(tmp_path: Path, key_uri: str, other_key_uri: str) -> None:
    store = tmp_path / "store"
    fs = EnvstoreFileSystem(target_protocol="file", key_uri=key_uri)
    fs.pipe_file(str(store / "a"), b"a" * 100)
    (store / "b-plain.csv").write_text("x,y\n")
    fs.pipe_file(str(store / "c"), b"c" * 100)
    url = f"envstore::file://{store}"
    base = ["rewrap", "-r", "--key-uri", key_uri, url, "--to", other_key_uri]
    stopped = script(tmp_path, *base)
    assert stopped.returncode == 1
    assert stopped.stdout.splitlines() == [f"rewrapped  {store}/a"]  # what already changed
    (line,) = stopped.stderr.splitlines()
    assert f"{store}/b-plain.csv" in line and "--skip-plain" in line
    done = script(tmp_path, *base, "--skip-plain")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"unchanged  {store}/a",
        f"skipped    {store}/b-plain.csv  (not envstore-encrypted)",
        f"rewrapped  {store}/c",
    ]
    new = EnvstoreFileSystem(target_protocol="file", key_uri=other_key_uri)
    assert new.cat_file(str(store / "a")) == b"a" * 100
    assert new.cat_file(str(store / "c")) == b"c" * 100
    assert (store / "b-plain.csv").read_text() == "x,y\n"


# -- keygen --print ----------------------------------------------------------------------------


def test_keygen_print_makes_an_env_key(tmp_path: Path) -> None:
    proc = script(tmp_path, "keygen", "--print")
    assert proc.returncode == 0 and proc.stderr == ""
    (line,) = proc.stdout.splitlines()
    assert len(base64.b64decode(line, validate=True)) == 32
    assert script(tmp_path, "keygen", "--print").stdout.strip() != line  # fresh every time
    assert not (tmp_path / "xdg" / "envstore").exists()  # no file written
    env = cli._env(tmp_path)
    env["ENVSTORE_KEY"] = line
    (tmp_path / "in.txt").write_text("secret rows\n")
    url = f"envstore::file://{tmp_path}/out.txt"
    kw = ["--key-uri", "env://ENVSTORE_KEY"]
    assert script(tmp_path, "cp", *kw, str(tmp_path / "in.txt"), url, env=env).returncode == 0
    assert script(tmp_path, "cat", *kw, url, env=env).stdout == "secret rows\n"
    both = script(tmp_path, "keygen", "--print", str(tmp_path / "k"))
    assert both.returncode == 2 and not (tmp_path / "k").exists()


def test_keygen_print_refuses_a_terminal(tmp_path: Path) -> None:
    leader, follower = os.openpty()
    try:
        proc = subprocess.run(
            [*cli._script(), "keygen", "--print"],
            stdout=follower,
            stderr=subprocess.PIPE,
            env=cli._env(tmp_path),
            timeout=60,
        )
        os.set_blocking(leader, False)
        try:
            shown = os.read(leader, 4096)
        except BlockingIOError:
            shown = b""
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 2
    assert b"refusing to print a key to a terminal" in proc.stderr
    assert shown == b""


def test_a_reader_going_away_does_not_hide_or_cut_work(
    tmp_path: Path, key_uri: str, other_key_uri: str
) -> None:
    """verify and rewrap go on when their reader leaves: the work decides the exit status."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(450):  # result lines far beyond a pipe buffer
        (src / f"{i:04d}-{'y' * 150}").write_bytes(b"z" * (i % 3))
    url = f"envstore::file://{tmp_path}/store"
    envstore.upload(str(src), url, recursive=True, jobs=4, key_uri=key_uri)
    victim = sorted((tmp_path / "store").iterdir())[400]
    victim.write_bytes(victim.read_bytes()[:-1])
    code, first, err = _read_one_line_and_close(tmp_path, "verify", "-r", "--key-uri", key_uri, url)
    assert first.startswith(b"ok    ")
    assert code == 1 and victim.name in err.decode() and err.decode().count("\n") == 1
    victim.unlink()
    rotate = ["rewrap", "-r", "--key-uri", key_uri, url, "--to", other_key_uri]
    code, first, err = _read_one_line_and_close(tmp_path, *rotate)
    assert (code, err) == (0, b"") and first.startswith(b"rewrapped  ")
    done = script(tmp_path, "verify", "-r", "--key-uri", other_key_uri, url)
    assert done.returncode == 0 and done.stdout.count("ok    ") == 449  # every object rotated
