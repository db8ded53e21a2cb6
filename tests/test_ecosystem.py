"""zarr v3 / xarray and duckdb through envstore URLs on local files (issue 13 items 1, 2),
and the README's "Use with xarray / zarr" and "Use with duckdb" snippets run as written."""

from __future__ import annotations

import base64
import re
import secrets
from pathlib import Path

import fsspec
import pytest

from envstore.format import MAGIC
from tests.ecosystem import README, duckdb_round_trip, zarr_round_trip

pytest.importorskip("zarr", minversion="3")
pytest.importorskip("xarray")
pytest.importorskip("duckdb")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # zarr: consolidated metadata


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_xarray_and_zarr_through_a_local_url(tmp_path: Path, key_uri: str) -> None:
    store = tmp_path / "d" / "x.zarr"
    raw = zarr_round_trip(f"envstore::file://{store}", {"key_uri": key_uri}, lambda: _files(store))
    assert all(body.startswith(MAGIC) for body in raw.values())
    assert not [n for n in raw if "envstore-part" in n]  # no leftover temporary files


def test_zarr_options_fsspec_consumers_pass_are_accepted(tmp_path: Path, key_uri: str) -> None:
    """zarr's FsspecStore.from_url adds asynchronous=True; envstore stays synchronous and zarr
    wraps it in fsspec's AsyncFileSystemWrapper (the convention for sync filesystems)."""
    from zarr.storage import FsspecStore

    url = f"envstore::file://{tmp_path}/o.zarr"
    store = FsspecStore.from_url(url, storage_options={"key_uri": key_uri, "auto_mkdir": True})
    assert type(store.fs).__name__ == "AsyncFileSystemWrapper"
    assert store.fs.sync_fs.async_impl is False
    assert store.fs.sync_fs.protocol[0] == "envstore"


def test_duckdb_reads_and_writes_local_files(tmp_path: Path, key_uri: str) -> None:
    fs = fsspec.filesystem(
        "envstore", target_protocol="file", key_uri=key_uri, skip_instance_cache=True
    )
    duckdb_round_trip(fs, str(tmp_path), lambda name: (tmp_path / name).read_bytes())
    assert (tmp_path / "t.parquet").read_bytes().startswith(MAGIC)


def test_unstrip_protocol_round_trips_and_routes(tmp_path: Path, key_uri: str) -> None:
    fs = fsspec.filesystem(
        "envstore", target_protocol="file", key_uri=key_uri, skip_instance_cache=True
    )
    path = f"{tmp_path}/a.bin"
    url = fs.unstrip_protocol(path)
    assert url == f"envstore::file://{path}"
    assert fs._strip_protocol(url) == path
    assert fs._strip_protocol(f"envstore://{path}") == path
    # duckdb routes a path to the filesystem whose protocol + "://" starts it
    assert any(url.startswith(p + "://") for p in fs.protocol)
    assert fs.protocol[0] == "envstore"  # what fsspec, pyarrow and duckdb name it by


# -- the README snippets, run exactly as written ------------------------------------------
def readme_snippet(section: str) -> str:
    """The first ```python block under the README heading ``section``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n### {section}\n")
    block = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert block is not None, section
    return block.group(1)


@pytest.fixture
def env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """ENVSTORE_KEY: a fresh base64 master key, as the snippets' env://ENVSTORE_KEY expects."""
    monkeypatch.setenv("ENVSTORE_KEY", base64.b64encode(secrets.token_bytes(32)).decode())


@pytest.mark.parametrize("section", ["Use with xarray / zarr", "Use with duckdb"])
def test_readme_snippet_runs(section: str, env_key: None, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the snippets write under tempfile.mkdtemp()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    code = readme_snippet(section)
    exec(compile(code, f"README.md: {section}", "exec"), {"__name__": "__readme__"})
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.read_bytes().startswith(MAGIC) for p in written)
