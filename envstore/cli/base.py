"""The ``envstore`` command group and what every command shares: the error policy, store options
(flags, ``-o KEY=VALUE``, options files), progress bars.

Exit codes: 0 success; 1 an operation failed (integrity, key access, configuration, not
found, permission, any other I/O or store error), with one ``envstore: error: ...`` line on
stderr (``--debug`` adds the traceback); 2 usage (unknown command or option, bad value).
"""

from __future__ import annotations

import errno
import json
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

try:
    import click
except ImportError:  # pragma: no cover - the console script without click installed
    sys.stderr.write('envstore: error: the command line needs click: pip install "envstore[cli]"\n')
    raise SystemExit(1) from None

from fsspec.callbacks import Callback, NoOpCallback

from envstore import __version__
from envstore.cli.out import quiet_exit, stdout_gone
from envstore.errors import EnvstoreError, describe

_STORE_OPTIONS = ("key_uri", "decrypt_key_uri", "context", "storage_option", "options_file")


class Failure(click.ClickException):
    """An operation failed: one ``envstore: error: ...`` line on stderr, exit code 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"envstore: error: {self.format_message()}", file=file, err=file is None)


def jobs_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-j/--jobs N``: how many ``what`` (e.g. "Files transferred") run in parallel."""
    return click.option(
        "-j",
        "--jobs",
        type=click.IntRange(1, 256),
        default=4,
        show_default=True,
        help=f"{what} in parallel.",
    )


#: ``--progress/--no-progress`` (default: a bar when stderr is a terminal)
progress_option = click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: on a terminal)."
)


def fail_if_any(bad: list[str], results: list[Any], what: str) -> None:
    """Failure naming the first few of the objects in ``bad`` (exit code 1), if any."""
    if bad:
        named = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise Failure(f"{len(bad)} of {len(results)} object(s) failed {what}: {named}")


class _Main(click.Group):
    """Turns every error of an operation into one line and exit code 1 (``--debug``: and
    the traceback); click's own usage errors keep exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except OSError as exc:
            if exc.errno == errno.EPIPE and stdout_gone():
                quiet_exit()  # `envstore ls -l ... | head -1`: like coreutils
            self._fail(ctx, exc)
        except Exception as exc:
            self._fail(ctx, exc)

    @staticmethod
    def _fail(ctx: click.Context, exc: Exception) -> None:
        debug = bool(ctx.params.get("debug"))
        if debug:
            traceback.print_exception(type(exc), exc, exc.__traceback__)
        message = describe(exc)
        if not debug and not isinstance(exc, (EnvstoreError, OSError)):
            message += " (--debug shows the traceback)"
        raise Failure(message) from exc


# -- storage options: flags, -o KEY=VALUE, options files ------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _load_options_file(path: str) -> dict[str, Any]:
    hint = "'--options-file'"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise click.BadParameter(describe(exc), param_hint=hint) from None
    try:
        if path.lower().endswith(".toml"):
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                try:
                    import tomli as tomllib  # type: ignore[no-redef]
                except ModuleNotFoundError:
                    raise click.BadParameter(
                        "reading TOML needs Python 3.11+ or tomli; use a JSON file",
                        param_hint=hint,
                    ) from None
            loaded = tomllib.loads(data.decode("utf-8"))
        else:
            loaded = json.loads(data)
    except ValueError as exc:  # JSON, TOML and UTF-8 decoding errors
        raise click.BadParameter(f"{path}: {describe(exc)}", param_hint=hint) from None
    if not isinstance(loaded, dict):
        raise click.BadParameter(f"{path} must hold an object (a table)", param_hint=hint)
    return loaded


def _apply(opts: dict[str, Any], raw: Mapping[str, Any]) -> None:
    """One layer of flags (global or command) onto ``opts``: file, then -o, then flags."""
    if raw.get("options_file"):
        _merge(opts, _load_options_file(raw["options_file"]))
    for item in raw.get("storage_option") or ():
        key, sep, value = item.partition("=")
        if not sep or not key or "" in key.split("."):
            raise click.BadParameter(
                f"{item!r} is not KEY=VALUE (nest with dots: s3.endpoint_url=...)",
                param_hint="'-o' / '--storage-option'",
            )
        *parents, leaf = key.split(".")
        target = opts
        for parent in parents:
            if not isinstance(target.get(parent, {}), dict):
                raise click.BadParameter(
                    f"{item!r}: {parent} is already a value, not a mapping",
                    param_hint="'-o' / '--storage-option'",
                )
            target = target.setdefault(parent, {})
        target[leaf] = _parse_value(value)
    if raw.get("key_uri"):
        uris = list(raw["key_uri"])
        opts["key_uri"] = uris[0] if len(uris) == 1 else uris
    if raw.get("decrypt_key_uri"):
        opts["decrypt_key_uris"] = list(raw["decrypt_key_uri"])
    if raw.get("context"):
        context = opts.get("context")
        context = dict(context) if isinstance(context, Mapping) else {}
        for item in raw["context"]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="'--context'")
            context[key] = value
        opts["context"] = context


def options(kw: dict[str, Any]) -> dict[str, Any]:
    """Filesystem options from the global flags, then the command's (which win).

    fsspec applies ``FSSPEC_ENVSTORE_*`` environment settings underneath by itself.
    """
    opts: dict[str, Any] = {}
    root = click.get_current_context().find_root()
    _apply(opts, (root.obj or {}).get("store_options", {}))
    _apply(opts, {name: kw.pop(name, None) for name in _STORE_OPTIONS})
    return opts


def store_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every store-touching command (and the group) accepts."""
    decorators = [
        click.option(
            "--key-uri",
            multiple=True,
            metavar="URI",
            help="Wrapping key URI (local:///path, env://VAR, alikms://, awskms://...); "
            "repeat for several recipients.",
        ),
        click.option(
            "--decrypt-key-uri",
            multiple=True,
            metavar="URI",
            help="More key URIs accepted for reading (repeatable).",
        ),
        click.option(
            "--context",
            multiple=True,
            metavar="K=V",
            help="Encryption context entry for new objects; when reading, an entry the "
            "object's context must hold (repeatable).",
        ),
        click.option(
            "-o",
            "--storage-option",
            multiple=True,
            metavar="KEY=VALUE",
            help="Filesystem option, JSON-decoded where it parses; inner filesystem options "
            "nest under its protocol: -o s3.endpoint_url=http://... (repeatable).",
        ),
        click.option(
            "--options-file",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="JSON or TOML (.toml) file of filesystem options, applied before the flags.",
        ),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


# -- cp helpers ------------------------------------------------------------------------------


def is_url(text: str) -> bool:
    return text.startswith("envstore::")


def local_path(text: str, name: str) -> str:
    if text.startswith("file://"):
        return text[len("file://") :]
    if "://" in text or "::" in text:
        raise click.UsageError(
            f"{name} {text!r} is neither a local path nor an envstore:: URL "
            "(plain remote URLs are not encrypted: use envstore::s3://..., envstore::oss://...)"
        )
    return text


def progress_bar(enabled: bool, desc: str) -> Callback:
    if enabled:
        try:
            from fsspec.callbacks import TqdmCallback

            return TqdmCallback(
                tqdm_kwargs={
                    "desc": desc,
                    "unit": "B",
                    "unit_scale": True,
                    "unit_divisor": 1024,
                    "file": sys.stderr,
                }
            )
        except ImportError:  # tqdm not installed: no bar
            pass
    return NoOpCallback()


# -- commands ------------------------------------------------------------------------------


@click.group(
    cls=_Main,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(__version__, prog_name="envstore")
@store_options
@click.pass_context
def main(ctx: click.Context, debug: bool, **kw: Any) -> None:
    """Client-side envelope encryption for object stores: envstore::s3://, envstore::oss://,
    envstore::file://, envstore::memory:// and any other fsspec URL.

    Store options (--key-uri, --context, -o, ...) may be given before the command or after
    it; FSSPEC_ENVSTORE_* environment variables apply underneath. Without any key option the
    default key written by `envstore keygen` is used.

    Exit codes: 0 ok, 1 an operation failed (one line on stderr), 2 usage.
    """
    ctx.ensure_object(dict)
    ctx.obj["store_options"] = {name: kw.get(name) for name in _STORE_OPTIONS}
