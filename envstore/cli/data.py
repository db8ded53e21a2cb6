"""``envstore`` commands on objects: cp, cat, ls, inspect, verify, clean."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from envstore.cli.base import (
    fail_if_any,
    is_url,
    jobs_option,
    local_path,
    main,
    options,
    progress_bar,
    progress_option,
    store_options,
)
from envstore.cli.out import echo_result, long_line


@main.command()
@click.argument("src")
@click.argument("dst")
@click.option("-r", "--recursive", is_flag=True, help="Copy a directory tree.")
@jobs_option("Files transferred")
@progress_option
@store_options
def cp(src: str, dst: str, recursive: bool, jobs: int, progress: bool | None, **kw: Any) -> None:
    """Copy between a local path and an envstore:: URL, either way (encrypt or decrypt).

    A tree's contents go under DST: `cp -r dir envstore::s3://b/p` writes b/p/<files of
    dir>. Downloads are written aside and renamed once every chunk authenticated.
    """
    from envstore.transfer import download, upload

    opts = options(kw)
    if is_url(src) == is_url(dst):
        raise click.UsageError(
            "one of SRC and DST must be an envstore:: URL and the other a local path"
        )
    show = sys.stderr.isatty() if progress is None else progress
    callback = progress_bar(show, "encrypt" if is_url(dst) else "decrypt")
    try:
        if is_url(dst):
            done = upload(
                local_path(src, "SRC"), dst, recursive, callback=callback, jobs=jobs, **opts
            )
        else:
            done = download(
                src, local_path(dst, "DST"), recursive, callback=callback, jobs=jobs, **opts
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
    from envstore.transfer import open_url

    fs, path = open_url(url, **options(kw))
    out = sys.stdout.buffer
    for data in fs.objects.reader(path).stream():
        out.write(data)
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

    fs, path = open_url(url, **options(kw))
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

    info = look(url, **options(kw))
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
@click.option("-r", "--recursive", is_flag=True, help="Every object under URL.")
@jobs_option("Objects checked")
@store_options
def verify(url: str, recursive: bool, jobs: int, **kw: Any) -> None:
    """Authenticate every chunk of each object (plaintext is discarded).

    Prints `ok` or `FAIL` per object; exits 1 if any failed.
    """
    from envstore.transfer import verify as run

    results = run(url, recursive, jobs=jobs, **options(kw))
    for r in results:
        if r["ok"]:
            echo_result(f"ok    {r['path']} ({r['size']} bytes)")
        else:
            echo_result(f"FAIL  {r['path']}: {r['error']}")
    fail_if_any([r["path"] for r in results if not r["ok"]], results, "verification")
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

    found = run(url, older_than, dry_run=dry_run, **options(kw))
    for r in found:
        click.echo(_clean_line(r, dry_run))
    if not found:
        click.echo(f"nothing to clean under {url}", err=True)


def _clean_line(r: dict[str, Any], dry_run: bool) -> str:
    verb = "would remove" if dry_run else "removed"
    what = r["path"] + (f" (upload {r['upload_id']})" if r.get("upload_id") else "")
    return f"{verb}  {r['kind']}  {what}  age {r['age'] / 3600:.1f}h"
