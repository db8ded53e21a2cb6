"""The ``envstore`` command line: keygen, cp, cat, ls, inspect, rewrap, verify, demo.

Exit codes: 0 success, 1 an operation failed (integrity, key access, not found, permission),
2 usage. Errors are one line on stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import click
except ImportError:  # pragma: no cover - the console script without the cli extra
    sys.stderr.write('envstore: the command line needs: pip install "envstore[cli]"\n')
    raise SystemExit(2) from None

from envstore.errors import EnvstoreError

_DEBUG = False


def _fail(exc: BaseException) -> None:
    if _DEBUG:
        traceback.print_exception(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    click.echo(f"envstore: error: {type(exc).__name__}: {text}", err=True)
    raise SystemExit(1)


def _run(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (EnvstoreError, OSError, ValueError) as exc:
        _fail(exc)


# -- options shared by the commands that touch stores -------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _load_options_file(path: str) -> dict[str, Any]:
    data = Path(path).read_bytes()
    if path.endswith(".toml"):
        import tomllib

        return tomllib.loads(data.decode())
    return json.loads(data)


def _options(ctx_opts: dict[str, Any]) -> dict[str, Any]:
    """Storage options from the command's flags (fsspec's FSSPEC_ENVSTORE_* config applies)."""
    opts: dict[str, Any] = {}
    if ctx_opts.get("options_file"):
        opts.update(_load_options_file(ctx_opts["options_file"]))
    for item in ctx_opts.get("storage_option") or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="-o")
        target = opts
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = _parse_value(value)
    if ctx_opts.get("key_uri"):
        uris = list(ctx_opts["key_uri"])
        opts["key_uri"] = uris[0] if len(uris) == 1 else uris
    if ctx_opts.get("decrypt_key_uri"):
        opts["decrypt_key_uris"] = list(ctx_opts["decrypt_key_uri"])
    if ctx_opts.get("context"):
        context = {}
        for item in ctx_opts["context"]:
            key, sep, value = item.partition("=")
            if not sep:
                raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--context")
            context[key] = value
        opts["context"] = context
    return opts


def store_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    decorators = [
        click.option("--key-uri", multiple=True, help="wrapping key URI (repeat for recipients)"),
        click.option("--decrypt-key-uri", multiple=True, help="extra key URI accepted for reading"),
        click.option("--context", multiple=True, metavar="K=V", help="encryption context entry"),
        click.option(
            "-o",
            "--storage-option",
            multiple=True,
            metavar="KEY=VALUE",
            help="storage option; nest inner options as s3.endpoint_url=...",
        ),
        click.option(
            "--options-file",
            type=click.Path(exists=True, dir_okay=False),
            help="JSON or TOML file of storage options",
        ),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def _split_opts(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    names = ("key_uri", "decrypt_key_uri", "context", "storage_option", "options_file")
    return {k: kwargs.pop(k) for k in names if k in kwargs}, kwargs


def _is_url(text: str) -> bool:
    return text.startswith("envstore::")


def _progress(enabled: bool | None) -> Any:
    from fsspec.callbacks import DEFAULT_CALLBACK

    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return DEFAULT_CALLBACK
    from fsspec.callbacks import TqdmCallback

    return TqdmCallback(tqdm_kwargs={"unit": "B", "unit_scale": True, "unit_divisor": 1024})


# -- commands ------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="show tracebacks")
@click.version_option(package_name="envstore")
def main(debug: bool) -> None:
    """Client-side envelope encryption for object stores (envstore::s3://, ::oss://, ::file://)."""
    global _DEBUG
    _DEBUG = debug


@main.command()
@click.argument("path", required=False)
def keygen(path: str | None) -> None:
    """Write a new master key file (mode 0600; never overwrites). Default: the default key."""
    from envstore.keys.local import keygen as make

    written = _run(lambda: make(path))
    click.echo(f"wrote {written}  (key URI: local://{written})")


@main.command()
@click.argument("src")
@click.argument("dst")
@click.option("-r", "--recursive", is_flag=True, help="copy directory trees")
@click.option("-j", "--jobs", default=4, show_default=True, help="files in parallel")
@click.option("--progress/--no-progress", default=None, help="progress bar (default: on a tty)")
@store_options
def cp(src: str, dst: str, recursive: bool, jobs: int, progress: bool | None, **kw: Any) -> None:
    """Copy between a local path and an envstore:: URL (either way)."""
    from envstore.transfer import download, upload

    opts = _options(_split_opts(kw)[0])
    cb = _progress(progress)
    if _is_url(dst) and not _is_url(src):
        done = _run(lambda: upload(src, dst, recursive, callback=cb, jobs=jobs, **opts))
    elif _is_url(src) and not _is_url(dst):
        done = _run(lambda: download(src, dst, recursive, callback=cb, jobs=jobs, **opts))
    else:
        raise click.UsageError("exactly one of SRC and DST must be an envstore:: URL")
    click.echo(f"copied {len(done)} file(s)", err=True)


@main.command()
@click.argument("url")
@store_options
def cat(url: str, **kw: Any) -> None:
    """Decrypt an object to standard output."""
    from envstore.transfer import open_url

    opts = _options(_split_opts(kw)[0])

    def go() -> None:
        fs, path = open_url(url, **opts)
        reader = fs._reader(path)
        out = sys.stdout.buffer
        step = 256 * 16384
        for pos in range(0, reader.plain_len, step):
            out.write(reader.read(pos, pos + step))
        reader.authenticate_end()
        out.flush()

    _run(go)


@main.command(name="ls")
@click.argument("url")
@click.option("-l", "long", is_flag=True, help="sizes and encryption state")
@click.option("--json", "as_json", is_flag=True, help="JSON output")
@store_options
def ls_(url: str, long: bool, as_json: bool, **kw: Any) -> None:
    """List objects with plaintext sizes."""
    from envstore.transfer import open_url

    opts = _options(_split_opts(kw)[0])

    def go() -> list[dict[str, Any]]:
        fs, path = open_url(url, **opts)
        return fs.ls(path, detail=True)

    entries = _run(go)
    if as_json:
        keep = ("name", "type", "size", "stored_size", "encrypted", "error")
        click.echo(json.dumps([{k: e.get(k) for k in keep if k in e} for e in entries], indent=2))
        return
    for e in entries:
        if not long:
            click.echo(e["name"])
            continue
        if e["type"] == "directory":
            click.echo(f"{'dir':>9} {'':>14} {e['name']}/")
            continue
        state = "error" if e.get("error") else ("encrypted" if e.get("encrypted") else "plain")
        click.echo(f"{state:>9} {e.get('size', 0):>14} {e['name']}")


@main.command()
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="JSON output")
@store_options
def inspect(url: str, as_json: bool, **kw: Any) -> None:
    """Show an object's envelope (never secrets; no key needed)."""
    from envstore.transfer import inspect as look

    info = _run(lambda: look(url, **_options(_split_opts(kw)[0])))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for key in ("path", "format_version", "suite", "placement", "plaintext_size", "stored_size"):
        click.echo(f"{key:15} {info[key]}")
    click.echo(f"{'context':15} {json.dumps(info['context'])}")
    for i, r in enumerate(info["recipients"], 1):
        params = f" {r['params']}" if r["params"] else ""
        click.echo(f"{'recipient ' + str(i):15} {r['provider']} {r['key_id']}{params}")


@main.command()
@click.argument("url")
@click.option("--to", "to", multiple=True, required=True, help="new key URI (repeatable)")
@click.option("-r", "--recursive", is_flag=True)
@click.option("--add", is_flag=True, help="add the new recipients instead of replacing")
@store_options
def rewrap(url: str, to: tuple[str, ...], recursive: bool, add: bool, **kw: Any) -> None:
    """Re-wrap data keys for new keys without re-encrypting data (key rotation)."""
    from envstore.transfer import rewrap as run

    opts = _options(_split_opts(kw)[0])
    done = _run(lambda: run(url, list(to), recursive, replace=not add, **opts))
    click.echo(f"rewrapped {len(done)} object(s)", err=True)


@main.command()
@click.argument("url")
@click.option("-r", "--recursive", is_flag=True)
@store_options
def verify(url: str, recursive: bool, **kw: Any) -> None:
    """Authenticate every chunk of each object; exit 1 naming any that fail."""
    from envstore.transfer import verify as run

    results = _run(lambda: run(url, recursive, **_options(_split_opts(kw)[0])))
    bad = [r for r in results if not r["ok"]]
    for r in results:
        if r["ok"]:
            click.echo(f"ok    {r['path']} ({r['size']} bytes)")
        else:
            click.echo(f"FAIL  {r['path']}: {r['error']}")
    if bad:
        click.echo(f"envstore: error: {len(bad)} of {len(results)} object(s) failed", err=True)
        raise SystemExit(1)


@main.command()
@click.option("--keep", type=click.Path(file_okay=False), help="keep the demo files in DIR")
@click.option("--rows", default=5000, show_default=True)
def demo(keep: str | None, rows: int) -> None:
    """The main job on the embedded default: local files + a fresh local key, no cloud."""
    from envstore.demo import run

    _run(lambda: run(keep, rows))


if __name__ == "__main__":  # pragma: no cover
    main()
