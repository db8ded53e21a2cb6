"""S3 write safety that is not about moving bytes: conditional requests and what their
failures mean, bucket checks (envstore never creates a bucket), and cleaning up multipart
uploads that killed writers left pending."""

from __future__ import annotations

import datetime
import errno
from typing import Any

from s3fs import S3FileSystem

from envstore.errors import ConcurrentModificationError, OutcomeUnknownError
from envstore.stores.failures import translate
from envstore.stores.objectstore import under

__all__ = [
    "answer_lost",
    "clean_uploads",
    "commit_error",
    "copy_error",
    "lost_put",
    "replaced",
    "require_bucket",
]


def _client_error(exc: BaseException) -> Any:
    """The botocore ClientError behind ``exc`` (s3fs chains it as the cause), or None."""
    seen: BaseException | None = exc
    while seen is not None:
        if hasattr(seen, "response") and isinstance(getattr(seen, "response", None), dict):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _status(exc: BaseException) -> tuple[str, int | None]:
    err = _client_error(exc)
    if err is None:
        return "", None
    response = err.response
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status


def precondition_failed(exc: BaseException) -> bool:
    code, status = _status(exc)
    return code == "PreconditionFailed" or status == 412


def commit_error(exc: BaseException, path: str, what: str, exclusive: bool) -> BaseException:
    """What a failed commit request (``PutObject`` or ``CompleteMultipartUpload``) means.

    A conditional create that lost (412) is FileExistsError.  A definite refusal (a 4xx other
    than 404) is passed on.  Anything else — no answer, a timeout, a 5xx, or a 404 NoSuchUpload
    that a retried Complete gets when the first one succeeded — leaves the outcome unknown;
    for a PutObject only a lost answer does (a request never sent changed nothing, and the
    write deadline's TimeoutError says so itself).
    """
    if exclusive and (isinstance(exc, FileExistsError) or precondition_failed(exc)):
        if isinstance(exc, FileExistsError):
            return exc
        return FileExistsError(errno.EEXIST, "an object exists already", path)
    if not isinstance(exc, Exception):
        return exc  # KeyboardInterrupt and the like pass unchanged
    _code, status = _status(exc)
    definite = isinstance(exc, PermissionError) or (
        status is not None and 400 <= status < 500 and status != 404
    )
    if definite:
        return exc
    if what == "PutObject" and not answer_lost(exc):
        return exc  # never sent (no connection), or the write deadline's own TimeoutError
    return OutcomeUnknownError(
        path,
        f"{what} got no usable answer ({type(exc).__name__}: {exc}); the object may be the "
        "new one or the old one: check it (envstore verify) and run envstore clean",
    )


def answer_lost(exc: BaseException) -> bool:
    """The request reached the store and no answer came back (reset, closed, cut short):
    s3fs retried it, and each attempt may have been stored."""
    known = exc if isinstance(exc, OSError) else translate(exc, "")
    if known is None:
        return False
    return isinstance(known, ConnectionError) and not isinstance(known, ConnectionRefusedError)


def lost_put(path: str) -> OutcomeUnknownError:
    """A conditional PutObject refused although the stored object holds this very body."""
    return OutcomeUnknownError(
        path,
        "the store refused a retried conditional PutObject, but the object in place holds "
        "this write's bytes: an earlier attempt whose answer was lost stored it; check it "
        "(envstore verify) before relying on it",
    )


def replaced(path: str) -> ConcurrentModificationError:
    return ConcurrentModificationError(
        f"{path} was replaced by another writer since it was read; nothing was changed"
    )


def copy_error(exc: BaseException, path: str) -> BaseException:
    """A conditional in-place write (rewrap) refused because the object changed."""
    if isinstance(exc, Exception) and precondition_failed(exc):
        return replaced(path)
    return exc


def require_bucket(fs: S3FileSystem, bucket: str) -> None:
    """FileNotFoundError naming ``bucket`` if it does not exist; envstore never creates one.
    A bucket that cannot be checked (no permission to HEAD it) is let through."""
    try:
        fs.call_s3("head_bucket", Bucket=bucket)
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT,
            f"bucket {bucket!r} does not exist (envstore never creates buckets: create it "
            "with your cloud's console, CLI or infrastructure code)",
            bucket,
        ) from None
    except PermissionError:
        pass


def clean_uploads(
    fs: S3FileSystem, bucket: str, prefix: str, older_than: float, dry_run: bool
) -> list[dict[str, Any]]:
    """Abort multipart uploads under ``bucket/prefix`` initiated ``older_than`` s ago or more."""
    now = datetime.datetime.now(datetime.timezone.utc)
    out: list[dict[str, Any]] = []
    kw: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = fs.call_s3("list_multipart_uploads", **kw)
        for up in page.get("Uploads") or []:
            if not under(prefix, up["Key"]):
                continue
            age = (now - up["Initiated"]).total_seconds()
            if age < older_than:
                continue
            if not dry_run:
                try:
                    fs.call_s3(
                        "abort_multipart_upload",
                        Bucket=bucket,
                        Key=up["Key"],
                        UploadId=up["UploadId"],
                    )
                except FileNotFoundError:
                    continue  # completed or aborted meanwhile
            out.append(
                {
                    "kind": "multipart-upload",
                    "path": f"{bucket}/{up['Key']}",
                    "upload_id": up["UploadId"],
                    "age": age,
                    "removed": not dry_run,
                }
            )
        if not page.get("IsTruncated"):
            return out
        kw["KeyMarker"] = page.get("NextKeyMarker", "")
        kw["UploadIdMarker"] = page.get("NextUploadIdMarker", "")
