"""Output manners of the command line: broken pipes, ``ls -l`` lines, printed keys."""

from __future__ import annotations

import base64
import os
import secrets
import select
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

import click

__all__ = ["long_line", "print_new_key", "quiet_exit", "stdout_gone"]


def stdout_gone() -> bool:
    """Whether our standard output is a pipe nobody reads any more (a broken pipe to a backend
    is an error like any other; only the reader of our output going away is not)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    if not hasattr(select, "poll"):  # pragma: no cover - Windows
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))


def quiet_exit() -> NoReturn:
    """Exit 0 without a message, and without Python's complaint when it flushes stdout at
    exit: what is left to write goes to /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    raise click.exceptions.Exit(0)


def print_new_key(path: str | None) -> None:
    from envstore.keys.local import MASTER_KEY_BYTES

    if path is not None:
        raise click.UsageError("--print writes no file: give PATH or --print, not both")
    if sys.stdout.isatty():
        raise click.UsageError(
            "refusing to print a key to a terminal; capture it instead: "
            "export ENVSTORE_KEY=$(envstore keygen --print)"
        )
    line = base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode("ascii")
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def long_line(e: Mapping[str, Any]) -> str:
    encrypted = e.get("encrypted")
    if e.get("error"):
        state = "error"
    else:
        state = "unknown" if encrypted is None else ("encrypted" if encrypted else "plain")
    suffix = f"  ({e['error']})" if e.get("error") else ""
    return f"{state:<9} {e.get('size', 0):>14}  {e['name']}{suffix}"
