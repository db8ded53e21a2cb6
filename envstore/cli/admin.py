"""``envstore`` commands on keys and whole stores: keygen, rewrap, demo, migrate."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import click

from envstore.cli.base import (
    Failure,
    fail_if_any,
    jobs_option,
    main,
    options,
    progress_bar,
    progress_option,
    store_options,
)
from envstore.cli.out import echo_result, print_new_key
from envstore.errors import describe


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

    opts = options(kw)
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
        raise Failure(f"{describe(exc)} (--skip-plain passes over such objects)") from exc


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
@jobs_option("Objects migrated")
@progress_option
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

    show = sys.stderr.isatty() if progress is None else progress
    callback = progress_bar(show and not dry_run, "migrate")
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
            on_object=_report_migrated,
            **options(kw),
        )
    finally:
        callback.close()
    fail_if_any([r["path"] for r in results if r["result"] == "failed"], results, "to migrate")


def _report_migrated(r: Mapping[str, Any]) -> None:
    fmt = f" [{r['format']}]" if r["format"] else ""
    where = f" -> {r['dst']}" if r["dst"] != r["path"] else ""
    error = f": {r['error']}" if r["error"] else ""
    echo_result(f"{r['result']}  {r['path']}{where}{fmt}{error}")
