"""Migrating one object: detect its format, decrypt, re-encrypt, verify, then replace.

The pipeline for one legacy object:

1. HEAD the source; parse its envelope (metadata, else ``<key>.instruction``);
2. unwrap the data key with the legacy keys and stream the stored bytes through the format's
   decoder.  GCM output is staged in a temporary file and released only once the tag verified;
   CTR/CBC output streams straight into the new envstore object, whose upload is discarded if
   an end-of-object check (length, MD5, CRC64, padding) fails;
3. the new object (at the destination, or beside the source for an in-place run) is read back
   and authenticated, and its plaintext SHA-256 compared with what was written;
4. in place: the source must be unchanged since step 1, then the new object replaces it in one
   step (a server-side copy onto the legacy key) and a used instruction file is removed.

Nothing is deleted or replaced when any check fails.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from envstore.errors import ConfigError, FormatError, IntegrityError, NotEncryptedError
from envstore.format import MAGIC
from envstore.fs import EnvstoreFileSystem
from envstore.migration import oss2fmt, s3ec
from envstore.migration.base import UNAUTHENTICATED, Legacy
from envstore.migration.ciphers import Decoder
from envstore.migration.legacy_keys import LegacyKeys
from envstore.migration.source import Source, SourceHead

#: stored bytes per source read (and the most plaintext held in memory per object)
STEP = 8 << 20
#: suffix of the new object written beside a legacy one during an in-place run
TEMP_SUFFIX = ".envstore-migrate"


@dataclass
class Job:
    """What every object of one run shares."""

    source: Source
    fs: EnvstoreFileSystem
    keys: LegacyKeys | None  # None on a dry run
    replace: bool
    dry_run: bool
    progress: Callable[[int], None]


@dataclass(frozen=True)
class Item:
    src: str
    dst: str
    in_place: bool
    size: int = 0  # stored bytes (progress)
    instruction: bool | None = None  # listing saw ``src.instruction`` (None: not listed)
    temp: bool | None = None  # listing saw a leftover ``dst + TEMP_SUFFIX`` (None: not listed)


def record(item: Item, fmt: str | None, size: int | None, result: str, **kw: Any) -> dict:
    out = {"path": item.src, "dst": item.dst, "format": fmt, "size": size, "result": result}
    out["authenticated"] = kw.get("authenticated")
    out["error"] = kw.get("error")
    return out


# -- detection ----------------------------------------------------------------------------------
def detect(job: Job, item: Item, head: SourceHead) -> Legacy | str | None:
    """The legacy envelope of an object, ``"envstore"`` for an envstore object, else None."""
    if oss2fmt.detect(head.meta):
        return oss2fmt.parse(head.meta, head.size, head.crc64)
    if s3ec.detect(head.meta):
        return s3ec.parse(head.meta, head.size)
    if is_envstore(job, item.src, head):
        return "envstore"
    if item.instruction is False:
        return None
    name = item.src + s3ec.INSTRUCTION_SUFFIX
    data = job.source.small(name)
    if data is None:
        return None
    fields = s3ec.parse_instruction(data)
    fields.update({k: v for k, v in head.meta.items() if k.startswith("x-amz-")})
    if not s3ec.detect(fields):
        raise FormatError(f"{name} is not an S3 Encryption Client instruction file")
    return s3ec.parse(fields, head.size, instruction=name)


def is_envstore(job: Job, path: str, head: SourceHead) -> bool:
    if any(k.startswith("envstore-") for k in head.meta):
        return True
    if head.size < len(MAGIC):
        return False
    return job.source.read(path, 0, len(MAGIC)) == MAGIC


def _done_at_destination(job: Job, item: Item, legacy: Legacy) -> bool:
    """Not in place: whether the destination already holds the migrated object."""
    try:
        loc = job.fs.envelope(item.dst)
    except FileNotFoundError:
        return False
    except (NotEncryptedError, FormatError, IsADirectoryError):
        if job.replace:
            return False
        raise FileExistsError(
            errno.EEXIST,
            "destination exists and is not envstore-encrypted (replace=True "
            "/ --replace overwrites it)",
            item.dst,
        ) from None
    if legacy.plain_len is None or loc.plain_len == legacy.plain_len:
        return True
    if job.replace:
        return False
    raise FileExistsError(
        errno.EEXIST,
        "destination is an envstore object of another size (replace=True / "
        "--replace overwrites it)",
        item.dst,
    )


# -- decryption ---------------------------------------------------------------------------------
def _feed(
    job: Job, item: Item, legacy: Legacy, decoder: Decoder, out: Callable[[Any], Any]
) -> None:
    for pos in range(0, legacy.stored_len, STEP):
        end = min(pos + STEP, legacy.stored_len)
        data = job.source.read(item.src, pos, end)
        out(decoder.update(data))
        job.progress(len(data))
    out(decoder.finalize())


def _stage(job: Job, item: Item, legacy: Legacy, decoder: Decoder) -> IO[bytes]:
    """Authenticate a GCM object into a temporary file (deleted on close)."""
    need = legacy.plain_len or 0
    where = tempfile.gettempdir()
    if shutil.disk_usage(where).free < need + (64 << 20):
        raise OSError(
            errno.ENOSPC,
            f"not enough free space in {where} to stage {need} bytes (set TMPDIR)",
            item.src,
        )
    staged = tempfile.TemporaryFile(prefix="envstore-migrate-")
    try:
        _feed(job, item, legacy, decoder, staged.write)
        staged.seek(0)
    except BaseException:
        staged.close()
        raise
    return staged


def _write(
    job: Job, target: str, legacy: Legacy, decoder: Decoder, item: Item
) -> tuple[int, bytes]:
    """Write the plaintext as a new envstore object at ``target``: (size, SHA-256)."""
    digest = hashlib.sha256()
    size = [0]

    def sink(writer: Any) -> Callable[[Any], None]:
        def write(data: bytes | memoryview) -> None:
            if data:
                if legacy.plain_len is not None and size[0] + len(data) > legacy.plain_len:
                    # the writer refuses bytes past the declared size; say what it means here
                    raise IntegrityError(
                        f"{item.src}: the plaintext runs past its recorded length "
                        f"{legacy.plain_len}: truncated or extended"
                    )
                digest.update(data)
                size[0] += len(data)
                writer.write(data)

        return write

    if legacy.authenticated:
        with _stage(job, item, legacy, decoder) as staged:
            with job.fs.objects.writer(target, size=legacy.plain_len) as w:
                write = sink(w)
                while data := staged.read(STEP):
                    write(data)
    else:
        with job.fs.objects.writer(target, size=legacy.plain_len) as w:
            _feed(job, item, legacy, decoder, sink(w))
    return size[0], digest.digest()


def _verify(job: Job, target: str, size: int, digest: bytes) -> None:
    """Read the new object back: every chunk authenticates and the plaintext is the same."""
    reader = job.fs.objects.reader(target)
    if reader.plain_len != size:
        raise IntegrityError(f"{target}: new object holds {reader.plain_len} bytes, not {size}")
    check = hashlib.sha256()
    for data in reader.stream(STEP):
        check.update(data)
    if not hmac.compare_digest(check.digest(), digest):
        raise IntegrityError(f"{target}: new object does not read back as written")


# -- one object ---------------------------------------------------------------------------------
def _commit(job: Job, item: Item, legacy: Legacy, head: SourceHead, target: str) -> None:
    if not item.in_place:
        return
    now = job.source.head(item.src)
    if now is None or now.token != head.token:
        job.fs.rm_file(target)
        raise FileExistsError(
            errno.EBUSY, "source object changed during migration; not replaced", item.src
        )
    job.fs.mv(target, item.dst)
    if legacy.instruction:
        job.source.rm(legacy.instruction)


def convert(job: Job, item: Item, legacy: Legacy, head: SourceHead) -> int:
    """Decrypt, re-encrypt, verify and (in place) replace one legacy object; returns the
    plaintext size."""
    assert job.keys is not None
    target = item.dst + TEMP_SUFFIX if item.in_place else item.dst
    decoder = legacy.open(job.keys)
    size, digest = _write(job, target, legacy, decoder, item)
    try:
        _verify(job, target, size, digest)
    except BaseException:
        job.fs.rm_file(target)
        raise
    _commit(job, item, legacy, head, target)
    return size


def _drop_leftover(job: Job, item: Item) -> None:
    """An in-place run interrupted between its copy and its cleanup left the new object's
    temporary copy, or the legacy object's S3EC instruction file: the legacy object is
    already replaced, so remove them (an instruction file only if it is one)."""
    temp = item.dst + TEMP_SUFFIX
    if item.temp or (item.temp is None and job.fs.fs.exists(temp)):
        job.fs.fs.rm_file(temp)
    if not item.instruction:  # None (single object): not looked for
        return
    name = item.src + s3ec.INSTRUCTION_SUFFIX
    data = job.source.small(name)
    if data is not None and s3ec.detect(s3ec.parse_instruction(data)):
        job.source.rm(name)


def migrate_one(job: Job, item: Item) -> dict[str, Any]:
    """One object; errors propagate (the driver decides whether to raise or report)."""
    head = job.source.head(item.src)
    if head is None:
        raise FileNotFoundError(errno.ENOENT, "no such object", item.src)
    legacy = detect(job, item, head)
    if legacy == "envstore":
        if item.in_place and not job.dry_run:
            _drop_leftover(job, item)
        return record(item, "envstore", None, "skipped: already envstore")
    if not isinstance(legacy, Legacy):
        return record(item, None, head.size, "skipped: not encrypted")
    note = "" if legacy.authenticated else f", {UNAUTHENTICATED}"
    auth = legacy.authenticated
    if not item.in_place and _done_at_destination(job, item, legacy):
        return record(
            item, legacy.format, legacy.plain_len, "skipped: already migrated", authenticated=auth
        )
    if job.dry_run:
        return record(
            item, legacy.format, legacy.plain_len, "would migrate" + note, authenticated=auth
        )
    size = convert(job, item, legacy, head)
    return record(item, legacy.format, size, "migrated" + note, authenticated=auth)


def check_jobs(jobs: int) -> None:
    if not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be a positive integer, not {jobs!r}")
