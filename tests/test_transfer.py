"""upload / download / inspect / verify / rewrap helpers over envstore::file:// and ::memory://."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from fsspec.callbacks import Callback
from fsspec.implementations.memory import MemoryFileSystem

import envstore
from envstore import IntegrityError, KeyAccessError, NotEncryptedError
from envstore.keys.local import keygen
from envstore.objects import Objects


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.bin": os.urandom(70_000),
        "empty.txt": b"",
        "sub/b.csv": b"x,y\n1,2\n",
        "sub/deeper/c.bin": os.urandom(16384),
        "sub/deeper/empty": b"",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "empty-dir").mkdir()
    return files


class Counter(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int | None] = []
        self.bytes = 0

    def set_size(self, size: int | None) -> None:
        self.sizes.append(size)

    def relative_update(self, inc: int = 1) -> None:
        self.bytes += inc


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_tree_round_trip(tmp_path: Path, key_uri: str, memroot: str, scheme: str) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    remote = (
        f"envstore::file://{tmp_path}/remote"
        if scheme == "file"
        else f"envstore::memory://{memroot}/remote"
    )
    up = Counter()
    written = envstore.upload(src, remote, recursive=True, key_uri=key_uri, callback=up, jobs=3)
    assert len(written) == len(files)
    assert up.sizes == [sum(len(v) for v in files.values())] and up.bytes == up.sizes[0]
    dst = tmp_path / "dst"
    down = Counter()
    envstore.download(remote, dst, recursive=True, key_uri=key_uri, callback=down)
    for rel, data in files.items():
        assert (dst / rel).read_bytes() == data
    assert (dst / "empty-dir").is_dir() or scheme == "memory"
    assert down.bytes == up.bytes
    if scheme == "file":
        for path in (tmp_path / "remote").rglob("*"):
            if path.is_file():
                assert path.read_bytes().startswith(envstore.format.MAGIC)


def test_single_files_and_errors(tmp_path: Path, key_uri: str) -> None:
    f = tmp_path / "one.bin"
    f.write_bytes(b"hello")
    envstore.upload(f, f"envstore::file://{tmp_path}/r/one.bin", key_uri=key_uri)
    envstore.download(
        f"envstore::file://{tmp_path}/r/one.bin", tmp_path / "back.bin", key_uri=key_uri
    )
    assert (tmp_path / "back.bin").read_bytes() == b"hello"
    with pytest.raises(IsADirectoryError):
        envstore.upload(tmp_path / "r", f"envstore::file://{tmp_path}/r2", key_uri=key_uri)
    with pytest.raises(envstore.ConfigError):
        envstore.upload(f, f"file://{tmp_path}/x", key_uri=key_uri)


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_inspect_has_no_secrets(
    tmp_path: Path, key_path: Path, key_uri: str, memroot: str, scheme: str
) -> None:
    url = (
        f"envstore::file://{tmp_path}/o" if scheme == "file" else f"envstore::memory://{memroot}/o"
    )
    envstore.upload(_file(tmp_path, b"abc"), url, key_uri=key_uri, context={"team": "x"})
    info = envstore.inspect(url)  # no key needed
    assert set(info) == {
        "path",
        "format_version",
        "suite",
        "placement",
        "plaintext_size",
        "stored_size",
        "size_field",
        "context",
        "recipients",
    }
    assert info["plaintext_size"] == 3 and info["placement"] == "header"
    assert info["stored_size"] > 3 and info["format_version"] == 1
    assert info["context"] == {"team": "x"} and info["recipients"][0]["provider"] == "local"
    text = repr(info)
    master = base64.b64decode(key_path.read_bytes())
    fs, path = envstore.transfer.open_url(url, key_uri=key_uri)
    env = fs.envelope(path).envelope
    data_key = bytes(fs.ring.open_data_key(env.recipients, env.context))
    for raw in (master, data_key):
        for form in (raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw)):
            assert str(form).strip("=b'") not in text
    assert key_path.read_text().strip() not in text
    assert all(r.blob.hex() not in text for r in env.recipients)  # not even the wrapped keys


def test_verify_reports_each_object(tmp_path: Path, key_uri: str) -> None:
    url = f"envstore::file://{tmp_path}/v"
    envstore.upload(make_tree_small(tmp_path / "s"), url, recursive=True, key_uri=key_uri)
    assert all(r["ok"] for r in envstore.verify(url, recursive=True, key_uri=key_uri))
    victim = tmp_path / "v" / "b.bin"
    raw = bytearray(victim.read_bytes())
    raw[-40] ^= 1
    victim.write_bytes(bytes(raw))
    (tmp_path / "v" / "plain.txt").write_bytes(b"not encrypted")
    results = {
        Path(r["path"]).name: r for r in envstore.verify(url, recursive=True, key_uri=key_uri)
    }
    assert results["a.bin"]["ok"]
    assert not results["b.bin"]["ok"] and "IntegrityError" in results["b.bin"]["error"]
    assert not results["plain.txt"]["ok"] and "NotEncryptedError" in results["plain.txt"]["error"]


def test_rewrap_replace_and_add(tmp_path: Path, key_uri: str, memroot: str) -> None:
    new_uri = f"local://{keygen(tmp_path / 'new.key')}"
    for url in (f"envstore::file://{tmp_path}/w/o", f"envstore::memory://{memroot}/w/o"):
        envstore.upload(_file(tmp_path, os.urandom(50_000)), url, key_uri=key_uri)
        fs, path = envstore.transfer.open_url(url, key_uri=key_uri)
        body_before = fs.fs.cat_file(path)[-50_000:]
        assert envstore.rewrap(url, new_uri, key_uri=key_uri) == [{"path": path, "changed": True}]
        fs, path = envstore.transfer.open_url(url, key_uri=key_uri)
        fs.invalidate_cache()
        assert fs.fs.cat_file(path)[-50_000:] == body_before  # body untouched
        with pytest.raises(KeyAccessError):
            fs.cat_file(path)
        new_fs, _ = envstore.transfer.open_url(url, key_uri=new_uri)
        data = new_fs.cat_file(path)
        envstore.rewrap(url, key_uri, replace=False, key_uri=new_uri)
        again = envstore.rewrap(url, [key_uri, new_uri], replace=False, key_uri=new_uri)
        assert again == [{"path": path, "changed": False}]  # nothing added twice
        for uri in (key_uri, new_uri):
            f2, _ = envstore.transfer.open_url(url, key_uri=uri, skip_instance_cache=True)
            assert f2.cat_file(path) == data
        assert len(envstore.inspect(url)["recipients"]) == 2


def test_rewrap_refuses_plain_objects(tmp_path: Path, key_uri: str) -> None:
    (tmp_path / "p").write_bytes(b"plain")
    with pytest.raises(NotEncryptedError):
        envstore.rewrap(f"envstore::file://{tmp_path}/p", key_uri, key_uri=key_uri)


def test_truncated_download_leaves_no_file(tmp_path: Path, key_uri: str) -> None:
    url = f"envstore::file://{tmp_path}/t"
    envstore.upload(_file(tmp_path, os.urandom(100_000)), url, key_uri=key_uri)
    stored = tmp_path / "t"
    stored.write_bytes(stored.read_bytes()[:-20_000])
    with pytest.raises(IntegrityError):
        envstore.download(url, tmp_path / "out.bin", key_uri=key_uri)
    assert not (tmp_path / "out.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".envstore-part-")] == []


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"in-{os.urandom(4).hex()}"
    path.write_bytes(data)
    return path


def make_tree_small(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "a.bin").write_bytes(os.urandom(20_000))
    (root / "b.bin").write_bytes(os.urandom(40_000))
    return root


def test_memory_fixture_is_clean(memroot: str) -> None:
    assert not [p for p in MemoryFileSystem.store if p.startswith(memroot)]


def test_interrupted_rewrap_leaves_every_object_readable(
    tmp_path: Path, key_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_uri = f"local://{keygen(tmp_path / 'new.key')}"
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}").write_bytes(os.urandom(20_000 + i))
    url = f"envstore::file://{tmp_path}/store"
    envstore.upload(src, url, recursive=True, key_uri=key_uri)
    calls = {"n": 0}
    original = Objects.set_recipients

    def flaky(self, path, recipients, expect=None):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, path, recipients, expect)

    monkeypatch.setattr(Objects, "set_recipients", flaky)
    with pytest.raises(KeyboardInterrupt):
        envstore.rewrap(url, new_uri, recursive=True, key_uri=key_uri)
    monkeypatch.undo()
    opened = {"old": 0, "new": 0}
    for i in range(6):
        data = (src / f"f{i}").read_bytes()
        for name, uri in (("old", key_uri), ("new", new_uri)):
            fs, path = envstore.transfer.open_url(
                f"{url}/f{i}", key_uri=uri, skip_instance_cache=True
            )
            try:
                assert fs.cat_file(path) == data
                opened[name] += 1
            except KeyAccessError:
                pass
    assert opened == {"old": 3, "new": 3}
    assert [p for p in (tmp_path / "store").iterdir() if p.name.startswith(".envstore-part-")] == []


def test_rerunning_an_interrupted_rewrap_completes_it(
    tmp_path: Path, key_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:

    new_uri = f"local://{keygen(tmp_path / 'new.key')}"
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"f{i}").write_bytes(os.urandom(1000 + i))
    url = f"envstore::file://{tmp_path}/store"
    envstore.upload(src, url, recursive=True, key_uri=key_uri)
    original = Objects.set_recipients
    calls = {"n": 0}

    def flaky(self, path, recipients, expect=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("connection reset")
        return original(self, path, recipients, expect)

    monkeypatch.setattr(Objects, "set_recipients", flaky)
    with pytest.raises(OSError):
        envstore.rewrap(url, new_uri, recursive=True, key_uri=key_uri)
    monkeypatch.undo()
    # the same call again: done objects open with the new key and are left as they are
    results = envstore.rewrap(url, new_uri, recursive=True, key_uri=key_uri)
    assert [r["changed"] for r in results] == [False, False, True, True]
    for i in range(4):
        fs, path = envstore.transfer.open_url(
            f"{url}/f{i}", key_uri=new_uri, skip_instance_cache=True
        )
        assert fs.cat_file(path) == (src / f"f{i}").read_bytes()
        assert len(envstore.inspect(f"{url}/f{i}")["recipients"]) == 1


def test_rewrap_error_names_the_object(tmp_path: Path, key_uri: str, other_key_uri: str) -> None:
    url = f"envstore::file://{tmp_path}/o"
    envstore.upload(_file(tmp_path, b"x"), url, key_uri=key_uri)
    new_uri = f"local://{keygen(tmp_path / 'third.key')}"
    with pytest.raises(KeyAccessError, match=f"^{tmp_path}/o: "):
        envstore.rewrap(url, new_uri, key_uri=other_key_uri)
    with pytest.raises(envstore.ConfigError):
        envstore.rewrap(url, [], key_uri=key_uri)


def test_single_file_targets(tmp_path: Path, key_uri: str, memroot: str) -> None:
    f = _file(tmp_path, b"payload")
    envstore.upload(f, f"envstore::memory://{memroot}/dir/", key_uri=key_uri)  # trailing slash
    envstore.upload(f, f"envstore::memory://{memroot}/dir", key_uri=key_uri)  # existing dir
    envstore.upload(f, f"envstore::memory://{memroot}/dir/renamed", key_uri=key_uri)
    fs, _ = envstore.transfer.open_url(f"envstore::memory://{memroot}", key_uri=key_uri)
    assert sorted(p.rsplit("/", 1)[1] for p in fs.find(f"{memroot}/dir")) == sorted(
        [f.name, "renamed"]
    )
    out = tmp_path / "out"
    out.mkdir()
    written = envstore.download(f"envstore::memory://{memroot}/dir/renamed", out, key_uri=key_uri)
    assert written == [str(out / "renamed")] and (out / "renamed").read_bytes() == b"payload"
    envstore.download(
        f"envstore::memory://{memroot}/dir/renamed", f"{tmp_path}/new/", key_uri=key_uri
    )
    assert (tmp_path / "new" / "renamed").read_bytes() == b"payload"
    with pytest.raises(FileNotFoundError):
        envstore.upload(tmp_path / "missing", f"envstore::memory://{memroot}/m", key_uri=key_uri)
    with pytest.raises(FileNotFoundError):
        envstore.download(f"envstore::memory://{memroot}/missing", out / "m", key_uri=key_uri)
    with pytest.raises(IsADirectoryError):
        envstore.download(f"envstore::memory://{memroot}/dir", out / "d", key_uri=key_uri)


def test_many_files_in_parallel_count_every_byte(tmp_path: Path, key_uri: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    sizes = [0, 1, 16383, 16384, 16385, *range(100, 4100, 100), 3 << 20]
    for i, size in enumerate(sizes):
        (src / f"f{i:03d}").write_bytes(os.urandom(size))
    url = f"envstore::file://{tmp_path}/store"
    up = Counter()
    envstore.upload(src, url, recursive=True, key_uri=key_uri, callback=up, jobs=8)
    assert up.sizes == [sum(sizes)] and up.bytes == sum(sizes)
    down = Counter()
    envstore.download(
        url, tmp_path / "back", recursive=True, key_uri=key_uri, callback=down, jobs=8
    )
    assert down.bytes == sum(sizes)
    for i in range(len(sizes)):
        assert (tmp_path / "back" / f"f{i:03d}").read_bytes() == (src / f"f{i:03d}").read_bytes()
    results = envstore.verify(url, recursive=True, key_uri=key_uri, jobs=8)
    assert [r["size"] for r in results] == sizes and all(r["ok"] for r in results)
    assert [Path(r["path"]).name for r in results] == sorted(p.name for p in src.iterdir())


def test_pool_raises_the_first_error_and_stops(tmp_path: Path) -> None:
    from envstore.transfer import run_pool

    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        if i == 1:
            raise ValueError("item 1")
        return i * 2

    assert run_pool(3, lambda i: i * 2, list(range(10))) == [i * 2 for i in range(10)]
    with pytest.raises(ValueError, match="item 1"):
        run_pool(1, work, list(range(100)))
    assert started == [0, 1]
    with pytest.raises(envstore.ConfigError):
        run_pool(0, work, [1])


def test_rewrap_reports_each_object_and_skips_plain_ones(tmp_path: Path, key_uri: str) -> None:
    new_uri = f"local://{keygen(tmp_path / 'new.key')}"
    root = tmp_path / "tree"
    url = f"envstore::file://{root}"
    envstore.upload(_file(tmp_path, b"a" * 100), f"{url}/a", key_uri=key_uri)
    (root / "b.csv").write_text("plain\n")
    envstore.upload(_file(tmp_path, b"c" * 100), f"{url}/c", key_uri=key_uri)
    seen: list[dict] = []
    with pytest.raises(NotEncryptedError, match=r"b\.csv"):
        envstore.rewrap(url, new_uri, recursive=True, on_object=seen.append, key_uri=key_uri)
    assert seen == [{"path": f"{root}/a", "changed": True}]  # what changed before the failure
    seen.clear()
    results = envstore.rewrap(
        url, new_uri, recursive=True, skip_plain=True, on_object=seen.append, key_uri=key_uri
    )
    assert (
        results
        == seen
        == [
            {"path": f"{root}/a", "changed": False},
            {"path": f"{root}/b.csv", "changed": False, "skipped": "plain"},
            {"path": f"{root}/c", "changed": True},
        ]
    )
    assert (root / "b.csv").read_text() == "plain\n"
