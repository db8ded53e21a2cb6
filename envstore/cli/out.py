"""Output manners of the command line: broken pipes, ``ls -l`` lines, printed keys."""

from __future__ import annotations

import base64
import errno
import os
import secrets
import select
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

import click

__all__ = ["echo_result", "long_line", "print_new_key", "quiet_exit", "stdout_gone"]


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


def _silence_stdout() -> None:
    """What is left to write (and Python's flush at exit) goes to /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def quiet_exit() -> NoReturn:
    """Exit 0 without a message, as coreutils do when their reader goes away (``ls``,
    ``cat``, ``inspect``: the output was the whole point)."""
    _silence_stdout()
    raise click.exceptions.Exit(0)


def echo_result(line: str) -> None:
    """A result line of a command whose work matters more than its output (``verify``,
    ``rewrap``): if the reader goes away, the work goes on and decides the exit status (a
    failed verification still exits 1; a rotation is not cut off half-way)."""
    try:
        click.echo(line)
    except OSError as exc:
        if exc.errno != errno.EPIPE or not stdout_gone():
            raise
        _silence_stdout()


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
