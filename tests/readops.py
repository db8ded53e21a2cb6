"""Every way to read an object's content, as one call each: for tests (and the tamper campaign)
that must see the same outcome through all of them.

``outcome(op, fs, path, ...)`` returns the bytes a read released, or the exception it raised
(``verify`` and the CLI report failures instead of raising: they are turned into an exception
of the reported type so that every read path is checked the same way).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import envstore
from envstore import errors
from envstore.fs import EnvstoreFileSystem

#: the read paths of issue 10 item 1
READS = ("open", "read_iter", "cat_file", "cat_ranges", "get_file", "verify", "cli_cat")


def _cli_args(options: Mapping[str, Any]) -> list[str]:
    import json

    args: list[str] = []
    for uri in [options["key_uri"]] if isinstance(options["key_uri"], str) else options["key_uri"]:
        args += ["--key-uri", uri]
    for k, v in (options.get("context") or {}).items():
        args += ["--context", f"{k}={v}"]
    for proto, inner in options.items():
        if isinstance(inner, Mapping) and proto != "context":
            for k, v in inner.items():
                args += ["-o", f"{proto}.{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    return args


def _typed(report: str) -> BaseException:
    name, _, message = report.partition(": ")
    kind = getattr(errors, name, None) or getattr(builtins, name, RuntimeError)
    if not (isinstance(kind, type) and issubclass(kind, BaseException)):
        kind = RuntimeError
    try:
        return kind(message)
    except TypeError:
        return RuntimeError(report)


def outcome(
    op: str,
    fs: EnvstoreFileSystem,
    path: str,
    url: str,
    options: Mapping[str, Any],
    scratch: Path,
) -> bytes | BaseException:
    """What reading ``path`` through ``op`` gives: the plaintext, or the error."""
    try:
        if op == "open":
            with fs.open(path, "rb") as f:
                return f.read()
        if op == "read_iter":  # small reads until EOF, as streaming consumers do
            with fs.open(path, "rb", block_size=5000) as f:
                return b"".join(iter(lambda: f.read(7000), b""))
        if op == "cat_file":
            return fs.cat_file(path)
        if op == "cat_ranges":
            got = fs.cat_ranges([path], [0], [None])[0]
            return got
        if op == "get_file":
            target = scratch / f"got-{os.urandom(4).hex()}"
            try:
                fs.get_file(path, str(target))
            except BaseException:
                assert not target.exists(), "a failed download left a file"
                assert not [p for p in scratch.iterdir() if p.name.startswith(".envstore")]
                raise
            return target.read_bytes()
        if op == "verify":
            (report,) = envstore.verify(url, **options)
            if report["ok"]:
                return fs.cat_file(path)  # verified: what a reader gets
            return _typed(report["error"])
        if op == "cli_cat":
            from click.testing import CliRunner

            from envstore.cli import main

            result = CliRunner().invoke(main, ["cat", url, *_cli_args(options)])
            if result.exit_code == 0:
                return result.stdout_bytes
            assert result.stdout_bytes == b"", "cat wrote plaintext, then failed"
            line = result.stderr.strip().splitlines()[-1]
            return _typed(line.removeprefix("envstore: error: "))
    except Exception as exc:  # the outcome is the error
        return exc
    raise ValueError(op)


def outcomes(
    fs: EnvstoreFileSystem,
    path: str,
    url: str,
    options: Mapping[str, Any],
    scratch: Path,
    ops: Sequence[str] = READS,
    before: Callable[[], None] | None = None,
) -> dict[str, bytes | BaseException]:
    """:func:`outcome` of each op; ``before`` runs before each (e.g. restores the object)."""
    out: dict[str, bytes | BaseException] = {}
    for op in ops:
        if before is not None:
            before()
        out[op] = outcome(op, fs, path, url, options, scratch)
    return out


def answer_through_read(store: Any) -> None:
    """Make ``store``'s object reads go through its ``read`` (for tests that replace ``read``
    to forge the store's answers): local files otherwise read into a buffer the store lends
    (``LocalStore.fetching``), past ``read``. The length check is the same one either way
    (``stores.base.exact``); real short local files are tested by truncating them."""
    from functools import partial

    from envstore.stores.base import Store

    store.fetching = partial(Store.fetching, store)
