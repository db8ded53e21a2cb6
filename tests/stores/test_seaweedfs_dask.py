"""dask distributed at scale on a real store: SeaweedFS through ``envstore::s3://`` (slow).

A ``LocalCluster`` with 2 worker processes writes a 16-partition parquet dataset and 2,000
small objects and reads them back (one column projected). The key is named only by
``FSSPEC_ENVSTORE_KEY_URI`` in the environment the workers inherit: no storage option carries
it, and no form of the master key is in any task the client sends (checked on the pickled
graph, the way distributed pickles tasks) nor in the pickled envstore filesystem.
"""

from __future__ import annotations

import base64
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from tests.keys.leaks import secret_forms
from tests.servers.seaweedfs import Mini

pytestmark = pytest.mark.slow

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")
boto3 = pytest.importorskip("boto3")

BUCKET = "envstore-dask"
N_OBJECTS = 2000
N_TASKS = 16
CREDS = {"key": "envstore-test", "secret": "envstore-test"}


@pytest.fixture
def weed(seaweedfs: Mini) -> Iterator[dict[str, Any]]:
    """s3fs options for the session's SeaweedFS, a bucket, and a unique prefix."""
    client = boto3.client(
        "s3",
        endpoint_url=seaweedfs.s3_url,
        aws_access_key_id=CREDS["key"],
        aws_secret_access_key=CREDS["secret"],
        region_name="us-east-1",
    )
    try:
        client.head_bucket(Bucket=BUCKET)
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=BUCKET)
    yield {"endpoint_url": seaweedfs.s3_url, **CREDS}
    seaweedfs.check()


def _frame(n: int) -> Any:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "a": np.arange(n, dtype="int64"),
            "b": rng.random(n),
            "c": [f"row-{i}" for i in range(n)],
            "d": rng.integers(0, 1 << 40, n),
        }
    )


def _payload(i: int) -> bytes:
    return f"object {i} ".encode() * (1 + i % 37)


def _write_objects(s3opts: dict[str, Any], root: str, ids: list[int]) -> int:
    """On a worker: an envstore filesystem from the environment's key URI only."""
    fs = fsspec.filesystem("envstore", target_protocol="s3", target_options=s3opts)
    for i in ids:
        fs.pipe_file(f"{root}/o{i:05d}", _payload(i))
    return len(ids)


def _read_objects(s3opts: dict[str, Any], root: str, ids: list[int]) -> list[int]:
    """On a worker: the ids whose object does not read back exactly."""
    fs = fsspec.filesystem("envstore", target_protocol="s3", target_options=s3opts)
    got = fs.cat([f"{root}/o{i:05d}" for i in ids])
    return [i for i in ids if got.get(f"{root}/o{i:05d}") != _payload(i)]


def _assert_no_key(blobs: list[bytes], key: bytes) -> None:
    assert any(b"envstore" in blob for blob in blobs), "the check did not see the filesystem"
    forms = [key, *(f.encode() for f in secret_forms(key))]
    for blob in blobs:
        for form in forms:
            assert form not in blob, "master key bytes in what the workers receive"


def _graph_payloads(*collections: Any) -> list[bytes]:
    """Every task of the collections' graphs, pickled the way distributed ships them."""
    from distributed.protocol.pickle import dumps

    out = []
    for coll in collections:
        graph = dict(coll.__dask_graph__())
        out += [dumps(task) for task in graph.values()]
    return out


def test_dask_cluster_parquet_and_2000_objects(
    weed: dict[str, Any], key_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FSSPEC_ENVSTORE_KEY_URI", f"local://{key_path}")
    master = _master_key(key_path)
    so = {"s3": weed}  # no key_uri anywhere in the options
    root = f"{BUCKET}/{uuid.uuid4().hex[:12]}"
    df = _frame(16 * 4000)
    ids = list(range(N_OBJECTS))
    batches = [ids[i::N_TASKS] for i in range(N_TASKS)]
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        write = dd.from_pandas(df, npartitions=16).to_parquet(
            f"envstore::s3://{root}/ds", storage_options=so, write_index=False, compute=False
        )
        _assert_no_key(_graph_payloads(write), master)
        write.compute()
        written = client.gather(
            client.map(_write_objects, [weed] * N_TASKS, [root] * N_TASKS, batches)
        )
        assert sum(written) == N_OBJECTS
        back = dd.read_parquet(f"envstore::s3://{root}/ds", storage_options=so, columns=["a", "c"])
        _assert_no_key(_graph_payloads(back), master)
        assert back.npartitions == 16
        frame = back.compute()
        bad = client.gather(client.map(_read_objects, [weed] * N_TASKS, [root] * N_TASKS, batches))
    pd.testing.assert_frame_equal(
        frame.sort_values("a").reset_index(drop=True), df[["a", "c"]], check_dtype=False
    )
    mismatches = sorted(i for part in bad for i in part)
    assert mismatches == [], f"{len(mismatches)} objects did not read back: {mismatches[:10]}"
    efs = fsspec.filesystem("envstore", target_protocol="s3", target_options=weed)
    assert len(efs.ls(f"{root}/ds")) == 16
    assert efs.cat_file(f"{root}/o01999") == _payload(1999)  # the key is loaded now
    _assert_no_key([pickle.dumps(efs), pickle.dumps(so)], master)


def _master_key(key_path: Path) -> bytes:
    """The raw master key (for the no-leak check): the key file holds it base64-encoded."""
    return base64.b64decode(key_path.read_bytes().strip(), validate=True)
