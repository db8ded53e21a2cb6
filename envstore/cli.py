"""The ``envstore`` command line: keygen, cp, cat, ls, inspect, rewrap, verify, demo, migrate.

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
from envstore.cli_out import echo_result, long_line, print_new_key, quiet_exit, stdout_gone
from envstore.errors import EnvstoreError

__all__ = ["main"]

_STORE_OPTIONS = ("key_uri", "decrypt_key_uri", "context", "storage_option", "options_file")


class Failure(click.ClickException):
    """An operation failed: one ``envstore: error: ...`` line on stderr, exit code 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"envstore: error: {self.format_message()}", file=file, err=file is None)


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line (OSErrors as ``path: reason``)."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc)
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
        message = _describe(exc)
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
        raise click.BadParameter(_describe(exc), param_hint=hint) from None
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
        raise click.BadParameter(f"{path}: {_describe(exc)}", param_hint=hint) from None
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


def _options(kw: dict[str, Any]) -> dict[str, Any]:
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


def _is_url(text: str) -> bool:
    return text.startswith("envstore::")


def _local_path(text: str, name: str) -> str:
    if text.startswith("file://"):
        return text[len("file://") :]
    if "://" in text or "::" in text:
        raise click.UsageError(
            f"{name} {text!r} is neither a local path nor an envstore:: URL "
            "(plain remote URLs are not encrypted: use envstore::s3://..., envstore::oss://...)"
        )
    return text


def _progress(enabled: bool, desc: str) -> Callback:
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


@main.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--print",
    "to_stdout",
    is_flag=True,
    help="Print a new base64 key to stdout instead of writing a file (for env://VAR); "
    "refused on a terminal.",
)
def keygen(path: str | None, to_stdout: bool) -> None:
    """Write a new local master key to PATH (mode 0600; never overwrites an existing file).

    Without PATH: the default key, $XDG_CONFIG_HOME/envstore/master.key, which envstore uses
    when no key is configured. Back it up: data under a lost key cannot be recovered.

    --print writes a new key (base64, one line) to stdout only, for an env:// variable or a
    secret store: `export ENVSTORE_KEY=$(envstore keygen --print)`. It refuses when stdout
    is a terminal, so that a key never lands in a scrollback or terminal log by accident.
    """
    if to_stdout:
        print_new_key(path)
        return
    from envstore.keys.local import keygen as make

    written = make(path)
    click.echo(f"wrote {written}  (key URI: local://{written.as_posix()}; mode 0600)")


@main.command()
@click.argument("src")
@click.argument("dst")
@click.option("-r", "--recursive", is_flag=True, help="Copy a directory tree.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Files transferred in parallel.",
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: on a terminal)."
)
@store_options
def cp(src: str, dst: str, recursive: bool, jobs: int, progress: bool | None, **kw: Any) -> None:
    """Copy between a local path and an envstore:: URL, either way (encrypt or decrypt).

    A tree's contents go under DST: `cp -r dir envstore::s3://b/p` writes b/p/<files of
    dir>. Downloads are written aside and renamed once every chunk authenticated.
    """
    from envstore.transfer import download, upload

    opts = _options(kw)
    if _is_url(src) == _is_url(dst):
        raise click.UsageError(
            "one of SRC and DST must be an envstore:: URL and the other a local path"
        )
    show = sys.stderr.isatty() if progress is None else progress
    callback = _progress(show, "encrypt" if _is_url(dst) else "decrypt")
    try:
        if _is_url(dst):
            done = upload(
                _local_path(src, "SRC"), dst, recursive, callback=callback, jobs=jobs, **opts
            )
        else:
            done = download(
                src, _local_path(dst, "DST"), recursive, callback=callback, jobs=jobs, **opts
            )
    finally:
        callback.close()
    if show:
        click.echo(f"copied {len(done)} file(s)", err=True)


@main.command()
@click.argument("url")
@store_options
def cat(url: str, **kw: Any) -> None:
    """Decrypt an object to standard output (each chunk authenticated before it is written)."""
    from envstore.transfer import STEP, open_url

    fs, path = open_url(url, **_options(kw))
    reader = fs._reader(path)
    out = sys.stdout.buffer
    for pos in range(0, reader.plain_len, STEP):
        out.write(reader.read(pos, pos + STEP))
    reader.authenticate_end()
    out.flush()


@main.command(name="ls")
@click.argument("url")
@click.option("-l", "long", is_flag=True, help="Encryption state and plaintext size per entry.")
@click.option("--json", "as_json", is_flag=True, help="JSON: a list of entries.")
@store_options
def ls_(url: str, long: bool, as_json: bool, **kw: Any) -> None:
    """List a directory (or one object) with plaintext sizes; no key needed.

    -l columns: state (encrypted, plain, unknown, error, dir), plaintext size in bytes, name.
    "unknown": the listing carries no metadata (S3, OSS) and ls makes no request per object;
    `envstore inspect URL` tells for one object.
    --json entries: name, type, size (plaintext), stored_size, encrypted (true, false or
    null for unknown), error (null or a message).
    """
    from envstore.transfer import open_url

    fs, path = open_url(url, **_options(kw))
    entries = sorted(fs.ls(path, detail=True), key=lambda e: e["name"])
    if as_json:
        keep = ("name", "type", "size", "stored_size", "encrypted", "error")
        click.echo(json.dumps([{k: e.get(k) for k in keep} for e in entries], indent=2))
        return
    for e in entries:
        if not long:
            click.echo(e["name"])
        elif e["type"] == "directory":
            click.echo(f"{'dir':<9} {'-':>14}  {e['name'].rstrip('/')}/")
        else:
            click.echo(long_line(e))


@main.command()
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@store_options
def inspect(url: str, as_json: bool, **kw: Any) -> None:
    """Show an object's envelope: format, suite, placement, sizes, context, recipients.

    Needs no key and never shows key material (not even the wrapped data keys).
    """
    from envstore.transfer import inspect as look

    info = look(url, **_options(kw))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for key in ("path", "format_version", "suite", "placement", "plaintext_size", "stored_size"):
        click.echo(f"{key:15} {info[key]}")
    click.echo(f"{'context':15} {json.dumps(info['context'])}")
    for i, r in enumerate(info["recipients"], 1):
        params = f" {json.dumps(r['params'])}" if r["params"] else ""
        click.echo(f"{'recipient ' + str(i):15} {r['provider']} {r['key_id']}{params}")


@main.command()
@click.argument("url")
@click.option(
    "--to", "to", multiple=True, required=True, metavar="URI", help="New key URI (repeatable)."
)
@click.option("-r", "--recursive", is_flag=True, help="Every object under URL.")
@click.option("--add", is_flag=True, help="Add the new recipients instead of replacing them.")
@click.option(
    "--skip-plain", is_flag=True, help="Pass over objects that are not envstore-encrypted."
)
@store_options
def rewrap(
    url: str, to: tuple[str, ...], recursive: bool, add: bool, skip_plain: bool, **kw: Any
) -> None:
    """Wrap data keys for new keys without re-encrypting data (key rotation).

    --key-uri / --decrypt-key-uri name a key that opens the objects now. Each object
    switches in one step and is reported as soon as it is done (rewrapped, unchanged,
    skipped); a failure stops the run, and a run started again as it was finishes it.
    """
    from envstore.errors import NotEncryptedError
    from envstore.transfer import rewrap as run

    def report(r: Mapping[str, Any]) -> None:
        if r.get("skipped"):
            echo_result(f"skipped    {r['path']}  (not envstore-encrypted)")
        else:
            echo_result(f"{'rewrapped' if r['changed'] else 'unchanged'}  {r['path']}")

    opts = _options(kw)
    try:
        run(
            url,
            list(to),
            recursive,
            replace=not add,
            skip_plain=skip_plain,
            on_object=report,
            **opts,
        )
    except NotEncryptedError as exc:
        raise Failure(f"{_describe(exc)} (--skip-plain passes over such objects)") from exc


@main.command()
@click.argument("url")
@click.option("-r", "--recursive", is_flag=True, help="Every object under URL.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Objects checked in parallel.",
)
@store_options
def verify(url: str, recursive: bool, jobs: int, **kw: Any) -> None:
    """Authenticate every chunk of each object (plaintext is discarded).

    Prints `ok` or `FAIL` per object; exits 1 if any failed.
    """
    from envstore.transfer import verify as run

    results = run(url, recursive, jobs=jobs, **_options(kw))
    for r in results:
        if r["ok"]:
            echo_result(f"ok    {r['path']} ({r['size']} bytes)")
        else:
            echo_result(f"FAIL  {r['path']}: {r['error']}")
    bad = [r["path"] for r in results if not r["ok"]]
    if bad:
        named = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise Failure(f"{len(bad)} of {len(results)} object(s) failed verification: {named}")
    if not results:
        click.echo(f"no objects under {url}", err=True)


@main.command()
@click.argument("url")
@click.option(
    "--older-than",
    default="1d",
    show_default=True,
    metavar="AGE",
    help="Only leftovers at least this old (90s, 30m, 12h, 1d, 2w).",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@store_options
def clean(url: str, older_than: str, dry_run: bool, **kw: Any) -> None:
    """Remove temp files and abort multipart uploads left by killed writes under URL.

    Local files: hidden .envstore-part-* files; S3/OSS: pending multipart uploads whose key
    starts with URL's path. Leftovers younger than --older-than are kept (a write may still
    be running).
    """
    from envstore.cleanup import clean as run

    found = run(url, older_than, dry_run=dry_run, **_options(kw))
    for r in found:
        click.echo(_clean_line(r, dry_run))
    if not found:
        click.echo(f"nothing to clean under {url}", err=True)


def _clean_line(r: dict[str, Any], dry_run: bool) -> str:
    verb = "would remove" if dry_run else "removed"
    what = r["path"] + (f" (upload {r['upload_id']})" if r.get("upload_id") else "")
    return f"{verb}  {r['kind']}  {what}  age {r['age'] / 3600:.1f}h"


@main.command()
@click.option(
    "--keep",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Keep the store and key in DIR (new or empty) instead of a temporary directory.",
)
@click.option("--rows", type=click.IntRange(1, 1_000_000), default=5000, show_default=True)
def demo(keep: str | None, rows: int) -> None:
    """The main job on the embedded default: local files and a fresh local key, no cloud.

    Writes a DataFrame as Parquet and CSV through envstore::file://, reads it back, and shows
    that the bytes on disk are ciphertext and what the envelope holds. Your own default key
    is not touched. Needs pandas and pyarrow.
    """
    from envstore.demo import DemoError, run

    try:
        run(keep, rows, echo=click.echo)
    except DemoError as exc:
        raise Failure(str(exc)) from exc


@main.command()
@click.argument("src")
@click.argument("dst")
@click.option("-r", "--recursive", is_flag=True, help="Every object under the SRC prefix.")
@click.option(
    "--legacy-key-uri",
    "legacy",
    multiple=True,
    required=True,
    metavar="URI",
    help="Key that opens the legacy objects (rsa:///key.pem, awskms://, alikms://, "
    "local:///raw-aes.key); repeatable.",
)
@click.option("--dry-run", is_flag=True, help="List what would happen; change nothing.")
@click.option("--replace", is_flag=True, help="Overwrite other objects at a separate DST.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Objects migrated in parallel.",
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: on a terminal)."
)
@store_options
def migrate(
    src: str,
    dst: str,
    recursive: bool,
    legacy: tuple[str, ...],
    dry_run: bool,
    replace: bool,
    jobs: int,
    progress: bool | None,
    **kw: Any,
) -> None:
    """Move oss2 CryptoBucket / S3 Encryption Client objects to envstore.

    SRC is a plain oss:// or s3:// URL, DST an envstore:: URL: the same objects (each is
    replaced in one step once its new version was read back and verified) or another
    prefix. Store options (-o oss.endpoint=..., -o s3.endpoint_url=...) serve both; --key-uri
    wraps the new objects. Objects already in envstore format are skipped, so an interrupted
    run can be started again. Prints one line per object as it is done; exits 1 if any
    failed.
    """
    from envstore.migration import migrate as run

    def report(r: Mapping[str, Any]) -> None:
        fmt = f" [{r['format']}]" if r["format"] else ""
        where = f" -> {r['dst']}" if r["dst"] != r["path"] else ""
        error = f": {r['error']}" if r["error"] else ""
        echo_result(f"{r['result']}  {r['path']}{where}{fmt}{error}")

    show = sys.stderr.isatty() if progress is None else progress
    callback = _progress(show and not dry_run, "migrate")
    try:
        results = run(
            src,
            dst,
            recursive,
            legacy_key_uris=list(legacy),
            replace=replace,
            jobs=jobs,
            callback=callback,
            dry_run=dry_run,
            on_object=report,
            **_options(kw),
        )
    finally:
        callback.close()
    bad = [r["path"] for r in results if r["result"] == "failed"]
    if bad:
        named = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise Failure(f"{len(bad)} of {len(results)} object(s) failed to migrate: {named}")


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="envstore")
