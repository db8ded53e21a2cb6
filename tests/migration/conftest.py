"""Fixtures of the migration tests: the KMS emulators of ``tests/keys`` and the OSS server
(the latter only where oss2 and werkzeug are installed: the S3EC environment has neither)."""

from __future__ import annotations

import importlib.util

from tests.keys.conftest import (  # noqa: F401  (fixtures)
    alikms,
    alikms_server,
    awskms,
    awskms_server,
)

if importlib.util.find_spec("oss2") and importlib.util.find_spec("werkzeug"):
    from tests.stores.conftest_oss import oss_fixture, oss_server_fixture  # noqa: F401
