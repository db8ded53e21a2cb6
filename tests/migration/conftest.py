"""Fixtures of the migration tests: the KMS emulators of ``tests/keys`` and the OSS server."""

from __future__ import annotations

import pytest

from tests.keys.conftest import (  # noqa: F401  (fixtures)
    alikms,
    alikms_server,
    awskms,
    awskms_server,
)

pytest.importorskip("oss2")

from tests.stores.conftest_oss import oss_fixture, oss_server_fixture  # noqa: F401
