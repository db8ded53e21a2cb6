"""Options of the envstore layer: what is accepted, what goes where, and the hints
(issue 13 items 1 and 5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fsspec
import fsspec.config
import pytest

import envstore
from envstore.errors import ConfigError
from envstore.fs import EnvstoreFileSystem

ROOT = Path(__file__).resolve().parent.parent


def make(**kw):
    return fsspec.filesystem("envstore", skip_instance_cache=True, **kw)


@pytest.mark.parametrize(
    "options",
    [
        {"asynchronous": True},  # zarr v3 / xarray
        {"asynchronous": False, "loop": None, "batch_size": 8},
        {"auto_mkdir": True},
        {"use_listings_cache": False, "listings_expiry_time": 5, "max_paths": 10},
    ],
)
def test_options_fsspec_consumers_pass_are_accepted(key_uri: str, options) -> None:
    fs = make(target_protocol="memory", key_uri=key_uri, **options)
    assert fs.async_impl is False  # a synchronous filesystem; async consumers wrap it
    fs.pipe_file("/consumer/a", b"ok")
    assert fs.cat_file("/consumer/a") == b"ok"


def test_a_typo_gets_did_you_mean(key_uri: str) -> None:
    with pytest.raises(ConfigError, match=r"'key_url': did you mean 'key_uri'\?") as info:
        make(target_protocol="file", key_url=key_uri)
    assert '"file": {' not in str(info.value)  # not told to move it under the inner layer
    with pytest.raises(ConfigError, match=r"'placment': did you mean 'placement'\?"):
        make(target_protocol="memory", placment="header")
    with pytest.raises(ConfigError, match=r"'decrypt_key_uri': did you mean 'decrypt_key_uris'"):
        make(target_protocol="memory", decrypt_key_uri=key_uri)


def test_a_typo_through_a_url_and_pandas(tmp_path: Path, key_uri: str) -> None:
    pd = pytest.importorskip("pandas")
    with pytest.raises(ConfigError, match="did you mean 'key_uri'"):
        pd.DataFrame({"a": [1]}).to_csv(
            f"envstore::file://{tmp_path}/a.csv", storage_options={"key_url": key_uri}
        )


def test_an_inner_option_at_the_top_is_shown_where_it_goes(key_uri: str) -> None:
    with pytest.raises(ConfigError) as info:
        make(target_protocol="memory", key_uri=key_uri, key_url="x", frobnicate=1)
    msg = str(info.value)
    assert "'key_url': did you mean 'key_uri'?" in msg
    assert msg.endswith('storage_options={"key_uri": ..., "memory": {\'frobnicate\': ...}}')


def test_options_under_an_alias_of_the_inner_protocol_are_mapped(key_uri: str) -> None:
    """envstore::s3a:// with {"s3": {...}} (s3fs serves both names): the options apply."""
    pytest.importorskip("s3fs")
    fs, path = fsspec.url_to_fs(
        "envstore::s3a://bucket/k",
        key_uri=key_uri,
        s3={"endpoint_url": "http://127.0.0.1:9", "anon": True},
        skip_instance_cache=True,
    )
    assert path == "bucket/k"
    assert fs.fs.endpoint_url == "http://127.0.0.1:9" and fs.fs.anon is True
    # explicit options of the URL's own protocol win over the alias's
    fs, _ = fsspec.url_to_fs(
        "envstore::s3a://bucket/k",
        key_uri=key_uri,
        s3={"endpoint_url": "http://127.0.0.1:9"},
        s3a={"endpoint_url": "http://127.0.0.1:10"},
        skip_instance_cache=True,
    )
    assert fs.fs.endpoint_url == "http://127.0.0.1:10"


def test_options_for_a_protocol_not_in_the_url_are_refused(key_uri: str) -> None:
    with pytest.raises(ConfigError, match=r"options for 's3', but .* inner filesystem is 'file'"):
        fsspec.url_to_fs("envstore::file:///tmp/x", key_uri=key_uri, s3={"anon": True})


def test_fsspec_config_with_nested_inner_options(
    monkeypatch: pytest.MonkeyPatch, key_uri: str
) -> None:
    """FSSPEC_ENVSTORE='{"s3": {...}}' (fsspec's config for the envstore layer) configures the
    inner s3 layer, and is ignored where the inner filesystem is another one."""
    pytest.importorskip("s3fs")
    conf = {"key_uri": key_uri, "s3": {"endpoint_url": "http://127.0.0.1:9", "anon": True}}
    monkeypatch.setitem(fsspec.config.conf, "envstore", conf)
    fs, _ = fsspec.url_to_fs("envstore::s3://bucket/k", skip_instance_cache=True)
    assert fs.fs.endpoint_url == "http://127.0.0.1:9" and fs.key_uris == [key_uri]
    fs, _ = fsspec.url_to_fs("envstore::s3://bucket/k", s3={"endpoint_url": "http://127.0.0.1:10"})
    assert fs.fs.endpoint_url == "http://127.0.0.1:10" and fs.fs.anon is True  # explicit wins
    mem = make(target_protocol="memory")  # the s3 part of the config is not this one's
    mem.pipe_file("/cfg/a", b"x")
    assert mem.cat_file("/cfg/a") == b"x"


def test_an_unknown_option_from_fsspec_config_says_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch, key_uri: str
) -> None:
    monkeypatch.setitem(fsspec.config.conf, "envstore", {"key_url": key_uri})
    with pytest.raises(ConfigError, match=r"did you mean 'key_uri'.*key_url came from fsspec"):
        make(target_protocol="memory")


def test_fsspec_config_from_the_environment_in_a_fresh_process(tmp_path: Path, key_uri) -> None:
    """The same through the real environment variable, as on a dask worker."""
    pytest.importorskip("s3fs")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env["FSSPEC_ENVSTORE"] = json.dumps(
        {"key_uri": key_uri, "s3": {"endpoint_url": "http://127.0.0.1:9", "anon": True}}
    )
    code = (
        "import fsspec, pickle\n"
        "fs, p = fsspec.url_to_fs('envstore::s3://bucket/k')\n"
        "clone = pickle.loads(pickle.dumps(fs))\n"
        "print(fs.fs.endpoint_url, clone.fs.endpoint_url, p)\n"
        "local = fsspec.filesystem('envstore', target_protocol='file')\n"
        f"a = {str(tmp_path / 'a')!r}\n"
        "local.pipe_file(a, b'x'); print(local.cat_file(a))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["http://127.0.0.1:9", "http://127.0.0.1:9", "bucket/k", "b'x'"]


def test_target_options_with_a_chained_url_gets_a_hint(tmp_path: Path, key_uri: str) -> None:
    """fsspec itself fills target_options from a chained URL; envstore's helpers say so."""
    url = f"envstore::file://{tmp_path}/a"
    with pytest.raises(ConfigError, match=r'"file": \{\.\.\.\}}, not target_options'):
        envstore.upload(__file__, url, key_uri=key_uri, target_options={"auto_mkdir": True})
    with pytest.raises(ConfigError, match="not target_options/target_protocol"):
        envstore.inspect(url, target_protocol="file")
    # what fsspec does with the same options: a TypeError before envstore is involved
    with pytest.raises(TypeError, match="target_options"):
        fsspec.url_to_fs(url, key_uri=key_uri, target_options={})


def test_target_options_without_a_chain_are_fine(tmp_path: Path, key_uri: str) -> None:
    fs, path = fsspec.url_to_fs(
        f"envstore://{tmp_path}/a",
        key_uri=key_uri,
        target_protocol="file",
        target_options={"auto_mkdir": True},
    )
    assert isinstance(fs, EnvstoreFileSystem) and path == f"{tmp_path}/a"


def test_an_unknown_inner_protocol_gets_a_suggestion(key_uri: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown inner protocol 's3s'; did you mean 's3'\?"):
        make(target_protocol="s3s", key_uri=key_uri)


def test_existing_filesystem_with_protocol_options_is_refused(key_uri: str) -> None:
    from fsspec.implementations.memory import MemoryFileSystem

    with pytest.raises(ConfigError, match="options for 'memory' cannot apply: fs= is an existing"):
        make(fs=MemoryFileSystem(), key_uri=key_uri, memory={"x": 1})
