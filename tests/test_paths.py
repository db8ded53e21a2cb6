"""Clear errors instead of silent wrong targets (issue 10 item 15)."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pytest

import envstore

CLOSED = "http://127.0.0.1:9"  # nothing is ever sent: the path is refused first


def s3_options(key_uri: str) -> dict:
    return {
        "key_uri": key_uri,
        "s3": {"endpoint_url": CLOSED, "key": "x", "secret": "y", "skip_instance_cache": True},
    }


@pytest.mark.parametrize("url", ["envstore::s3://", "envstore::s3:///"])
def test_empty_s3_path_is_a_clear_error(url: str, key_uri: str, tmp_path: Path) -> None:
    opts = s3_options(key_uri)
    for mode in ("rb", "wb"):
        with pytest.raises(ValueError, match="names no object"):
            with fsspec.open(url, mode, **opts) as f:
                f.write(b"x") if mode == "wb" else f.read()
    fs, path = fsspec.core.url_to_fs(url, **opts)
    src = tmp_path / "src"
    src.write_bytes(b"data")
    for call in (
        lambda: fs.cat_file(path),
        lambda: fs.pipe_file(path, b"x"),
        lambda: fs.put_file(str(src), path),
        lambda: fs.get_file(path, str(tmp_path / "out")),
        lambda: fs.open(path, "rb"),
        lambda: fs.makedirs(path, exist_ok=True),
    ):
        with pytest.raises(ValueError, match="names no object"):
            call()
    with pytest.raises(ValueError, match="names no object"):
        envstore.upload(str(src), url, **opts)
    assert not (tmp_path / "out").exists()


def test_other_filesystems_url_on_a_local_store(
    key_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = tmp_path / "store"
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    fs = fsspec.filesystem(
        "envstore", target_protocol="file", key_uri=key_uri, skip_instance_cache=True
    )
    for target in ("envstore::s3://bucket/x", "s3://bucket/x", "oss://b/k", "memory::x"):
        with pytest.raises(ValueError, match="URL of another filesystem"):
            fs.pipe_file(target, b"secret")
        with pytest.raises(ValueError, match="URL of another filesystem"):
            fs.cat_file(target)
        with pytest.raises(ValueError, match="URL of another filesystem"):
            fs.open(target, "wb")
    assert os.listdir(tmp_path) == []  # nothing written to ./s3: or anywhere
    # its own URLs still work, with or without the prefixes
    fs.pipe_file(f"envstore::file://{tmp_path}/ok", b"1")
    fs.pipe_file(f"file://{tmp_path}/ok2", b"2")
    fs.pipe_file(f"{tmp_path}/ok3", b"3")
    assert fs.cat_file(f"envstore::file://{tmp_path}/ok2") == b"2"
    assert sorted(os.listdir(tmp_path)) == ["ok", "ok2", "ok3"]


def test_other_filesystems_url_on_memory(memfs) -> None:
    with pytest.raises(ValueError, match="memory://"):
        memfs.pipe_file("s3://bucket/x", b"secret")
    memfs.pipe_file("memory://fine/x", b"1")
    assert memfs.cat_file("envstore::memory://fine/x") == b"1"


def test_cli_empty_s3_path(key_uri: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from envstore.cli import main

    src = tmp_path / "a"
    src.write_bytes(b"x")
    result = CliRunner().invoke(
        main,
        [
            "--key-uri",
            key_uri,
            "-o",
            f"s3.endpoint_url={CLOSED}",
            "cp",
            str(src),
            "envstore::s3://",
        ],
    )
    assert result.exit_code == 1
    assert "names no object" in result.stderr
