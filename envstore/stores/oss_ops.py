"""OSS write safety that is not about moving bytes (the counterpart of ``s3_ops``):
conditional requests and what their failures mean, bucket checks, multipart cleanup."""

from __future__ import annotations

import errno
import time
from typing import Any

import oss2

from envstore.errors import ConcurrentModificationError, OutcomeUnknownError
from envstore.stores.objectstore import under

__all__ = [
    "FORBID_OVERWRITE",
    "clean_uploads",
    "commit_error",
    "copy_error",
    "exists_error",
    "require_bucket",
]

#: OSS refuses the write (409 FileAlreadyExists) if the key exists, atomically
FORBID_OVERWRITE = {"x-oss-forbid-overwrite": "true"}


def _oss_error(exc: BaseException) -> oss2.exceptions.OssError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, oss2.exceptions.OssError):
            return seen
        seen = seen.__cause__
    return None


def commit_error(exc: BaseException, path: str, what: str, exclusive: bool) -> BaseException:
    """What a failed ``PutObject``/``CompleteMultipartUpload`` means (as on S3): a lost
    exclusive race is FileExistsError, a definite refusal (4xx but 404) passes, anything else
    (no answer, 5xx, NoSuchUpload) after a Complete is OutcomeUnknownError."""
    if exclusive and exists_error(exc, path) is not exc:
        return exists_error(exc, path)
    status = getattr(_oss_error(exc), "status", None)
    if not isinstance(exc, Exception) or what == "PutObject":
        return exc
    if isinstance(status, int) and 400 <= status < 500 and status != 404:
        return exc
    return OutcomeUnknownError(
        path,
        f"{what} got no usable answer ({type(exc).__name__}: {exc}); the object may be the "
        "new one or the old one: check it (envstore verify) and run envstore clean",
    )


def exists_error(exc: BaseException, path: str) -> BaseException:
    """FileExistsError for OSS's 409 FileAlreadyExists (``x-oss-forbid-overwrite``), else
    ``exc`` itself."""
    err = _oss_error(exc)
    code = getattr(err, "code", "") or ""
    if getattr(err, "status", None) == 409 and code in ("FileAlreadyExists", "ObjectAlreadyExists"):
        return FileExistsError(errno.EEXIST, "an object exists already", path)
    return exc


def copy_error(exc: BaseException, path: str) -> BaseException:
    err = _oss_error(exc)
    if err is not None and err.status == 412:
        return ConcurrentModificationError(
            f"{path} was replaced by another writer since it was read; nothing was changed"
        )
    return exc


def require_bucket(bucket: oss2.Bucket, name: str) -> None:
    """FileNotFoundError naming the bucket if it does not exist; envstore never creates one."""
    try:
        bucket.get_bucket_info()
    except oss2.exceptions.NoSuchBucket:
        raise FileNotFoundError(
            errno.ENOENT,
            f"bucket {name!r} does not exist (envstore never creates buckets: create it with "
            "the OSS console, ossutil or infrastructure code)",
            name,
        ) from None
    except oss2.exceptions.AccessDenied:
        pass  # cannot check; the write itself will tell


def clean_uploads(
    bucket: oss2.Bucket, name: str, prefix: str, older_than: float, dry_run: bool
) -> list[dict[str, Any]]:
    """Abort multipart uploads under ``prefix`` initiated ``older_than`` seconds ago or more."""
    now = time.time()
    out: list[dict[str, Any]] = []
    for up in oss2.MultipartUploadIterator(bucket, prefix=prefix):
        if up.is_prefix() or not under(prefix, up.key):
            continue
        age = now - float(up.initiation_date)
        if age < older_than:
            continue
        if not dry_run:
            try:
                bucket.abort_multipart_upload(up.key, up.upload_id)
            except oss2.exceptions.NoSuchUpload:
                continue
        out.append(
            {
                "kind": "multipart-upload",
                "path": f"{name}/{up.key}",
                "upload_id": up.upload_id,
                "age": age,
                "removed": not dry_run,
            }
        )
    return out
