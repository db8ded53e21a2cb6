"""fsspec's shipped conformance suites over envstore on memory:// and file://."""

from __future__ import annotations

import posixpath

import fsspec
import pytest
from fsspec.tests.abstract import AbstractFixtures
from fsspec.tests.abstract.copy import AbstractCopyTests
from fsspec.tests.abstract.get import AbstractGetTests
from fsspec.tests.abstract.open import AbstractOpenTests
from fsspec.tests.abstract.pipe import AbstractPipeTests
from fsspec.tests.abstract.put import AbstractPutTests


class EnvstoreMemoryFixtures(AbstractFixtures):
    @pytest.fixture
    def fs(self, key_uri: str, memroot: str):
        return fsspec.filesystem(
            "envstore", target_protocol="memory", key_uri=key_uri, skip_instance_cache=True
        )

    @pytest.fixture
    def fs_join(self):
        return posixpath.join

    @pytest.fixture
    def fs_path(self, memroot: str) -> str:
        return memroot


class EnvstoreLocalFixtures(AbstractFixtures):
    @pytest.fixture
    def fs(self, key_uri: str):
        return fsspec.filesystem(
            "envstore",
            target_protocol="file",
            target_options={"auto_mkdir": True},
            key_uri=key_uri,
            skip_instance_cache=True,
        )

    @pytest.fixture
    def fs_path(self, tmp_path) -> str:
        path = tmp_path / "envstore-root"
        path.mkdir()
        return str(path)


class TestMemoryCopy(EnvstoreMemoryFixtures, AbstractCopyTests):
    pass


class TestMemoryGet(EnvstoreMemoryFixtures, AbstractGetTests):
    pass


class TestMemoryPut(EnvstoreMemoryFixtures, AbstractPutTests):
    pass


class TestMemoryOpen(EnvstoreMemoryFixtures, AbstractOpenTests):
    pass


class TestMemoryPipe(EnvstoreMemoryFixtures, AbstractPipeTests):
    pass


class TestLocalCopy(EnvstoreLocalFixtures, AbstractCopyTests):
    pass


class TestLocalGet(EnvstoreLocalFixtures, AbstractGetTests):
    pass


class TestLocalPut(EnvstoreLocalFixtures, AbstractPutTests):
    pass


class TestLocalOpen(EnvstoreLocalFixtures, AbstractOpenTests):
    pass


class TestLocalPipe(EnvstoreLocalFixtures, AbstractPipeTests):
    pass
