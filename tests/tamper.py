"""A tamper campaign: many altered variants of envstore objects, each read back; counts outcomes.

An attacker with write access to the store alters an object (bit flips anywhere in the stored
bytes, truncation and extension, reordered chunks, planted recipients, a truncation between
locating and reading) and a reader reads it. The only acceptable outcomes are the exact
plaintext or an envstore error; *wrong plaintext* (anything else returned) must never happen.

Run the full campaign (and print the counts) with::

    python -m tests.tamper [--every-bit] [--sizes 0,1,16383,16384,16385,40000]

``tests/test_tamper_campaign.py`` runs a bounded campaign in the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec

from envstore.errors import EnvstoreError
from envstore.format import CHUNK, PREFIX, WIRE_CHUNK, body_size
from envstore.fs import EnvstoreFileSystem
from envstore.keys.local import keygen
from envstore.stores.base import Head
from envstore.stores.local import MemoryStore
from tests.readops import answer_through_read

SIZES = (0, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1, 40_000)

#: how a variant is read back: (name, function returning (expected, got))
Reader = Callable[[EnvstoreFileSystem, str, bytes], tuple[bytes, bytes]]


def _read_all(fs: EnvstoreFileSystem, path: str, data: bytes) -> tuple[bytes, bytes]:
    with fs.open(path, "rb") as f:
        return data, f.read()


def _cat(fs: EnvstoreFileSystem, path: str, data: bytes) -> tuple[bytes, bytes]:
    return data, fs.cat_file(path)


def _tail(fs: EnvstoreFileSystem, path: str, data: bytes) -> tuple[bytes, bytes]:
    return data[-5:], fs.cat_file(path, -5)  # end-relative: the final chunk first


def _middle(fs: EnvstoreFileSystem, path: str, data: bytes) -> tuple[bytes, bytes]:
    s, e = len(data) // 3, len(data) // 3 + 50
    got = fs.cat_ranges([path], [s], [e], on_error="raise")[0]
    return data[s:e], got


READERS: dict[str, Reader] = {"open": _read_all, "cat": _cat, "tail": _tail, "range": _middle}


def classify(
    fs: EnvstoreFileSystem, path: str, data: bytes, readers=READERS
) -> list[tuple[str, str]]:
    """(reader, outcome) per reader: ``plaintext`` (exactly the bytes asked for),
    ``wrong-plaintext`` or the error's type name."""
    out = []
    for name, read in readers.items():
        try:
            want, got = read(fs, path, data)
        except (EnvstoreError, OSError) as exc:
            out.append((name, type(exc).__name__))
            continue
        out.append((name, "plaintext" if got == want else "wrong-plaintext"))
    return out


class MetadataMemoryStore(MemoryStore):
    """memory:// whose objects carry user metadata, as S3/OSS HEAD returns it: lets the
    campaign alter metadata-placed envelopes field by field without a server."""

    def __init__(self, fs: object) -> None:
        super().__init__(fs)  # type: ignore[arg-type]
        self.fields: dict[str, dict[str, str]] = {}

    def head(self, path: str) -> Head:
        head = super().head(path)
        return Head(head.size, self.fields.get(self.fs._strip_protocol(path)), head.token)


class Campaign:
    """Variants of objects of several sizes in one envstore filesystem (memory or local)."""

    def __init__(self, fs: EnvstoreFileSystem, root: str) -> None:
        self.fs = fs
        self.root = root
        self.counts: Counter[tuple[str, str, str]] = Counter()  # (family, reader, outcome)
        self.variants: Counter[str] = Counter()  # family -> variants
        self.wrong: list[str] = []

    def _store(self, path: str, raw: bytes) -> None:
        self.fs.fs.pipe_file(path, raw)
        self.fs.invalidate_cache(path)

    def _try(self, family: str, label: str, path: str, raw: bytes, data: bytes) -> None:
        self._store(path, raw)
        self.variants[family] += 1
        for reader, outcome in classify(self.fs, path, data):
            self.counts[family, reader, outcome] += 1
            if outcome == "wrong-plaintext":
                self.wrong.append(f"{family}: {label} ({reader})")

    def object(self, size: int, streamed: bool) -> tuple[str, bytes, bytes]:
        path = f"{self.root}/o-{size}-{'s' if streamed else 'p'}"
        data = os.urandom(size)
        if streamed:  # no envstore-size field: only the body length tells the size
            with self.fs.open(path, "wb") as f:
                f.write(data)
        else:
            self.fs.pipe_file(path, data)
        return path, data, bytes(self.fs.fs.cat_file(path))

    # -- families of variants ---------------------------------------------------------------
    def bit_flips(self, size: int, every_bit: bool, stride: int = 1) -> None:
        path, data, raw = self.object(size, streamed=True)
        for pos in range(0, len(raw), stride):
            for bit in range(8) if every_bit else (pos % 8,):
                tampered = bytearray(raw)
                tampered[pos] ^= 1 << bit
                self._try(
                    "bit-flip", f"size {size} byte {pos} bit {bit}", path, bytes(tampered), data
                )

    def _cuts(self, size: int, offset: int) -> Iterator[int]:
        body = body_size(size)
        marks = {0, 1, PREFIX - 1, PREFIX, PREFIX + 1, body - 1}
        for k in range(size // CHUNK + 2):
            b = PREFIX + k * WIRE_CHUNK
            marks.update({b - 17, b - 16, b - 15, b - 1, b, b + 1, b + 15, b + 16, b + 17})
        if body < 2048:
            marks.update(range(body))
        yield from sorted(offset + m for m in marks if 0 <= m < body)

    def truncations(self, size: int) -> None:
        for streamed in (True, False):
            path, data, raw = self.object(size, streamed)
            offset = self.fs.envelope(path).body_offset
            for cut in self._cuts(size, offset):
                self._try("truncation", f"size {size} cut {cut}", path, raw[:cut], data)
            if offset:  # header placement: cuts inside the header too
                for cut in range(0, offset, max(1, offset // 64)):
                    self._try("truncation", f"size {size} header cut {cut}", path, raw[:cut], data)

    def extensions(self, size: int) -> None:
        path, data, raw = self.object(size, streamed=True)
        offset = self.fs.envelope(path).body_offset
        last = raw[offset + PREFIX + (size // CHUNK) * WIRE_CHUNK :]
        for extra in (
            b"\0",
            os.urandom(15),
            os.urandom(16),
            os.urandom(17),
            last,
            raw[-WIRE_CHUNK:],
        ):
            self._try("extension", f"size {size} +{len(extra)}", path, raw + extra, data)

    def reorders(self, size: int) -> None:
        path, data, raw = self.object(size, streamed=True)
        start = self.fs.envelope(path).body_offset + PREFIX
        chunks = [
            raw[start + i : start + i + WIRE_CHUNK] for i in range(0, len(raw) - start, WIRE_CHUNK)
        ]
        n = len(chunks)
        for i in range(n):
            for j in range(n):
                if i != j:
                    swapped = list(chunks)
                    swapped[i], swapped[j] = chunks[j], chunks[i]
                    self._try(
                        "reorder",
                        f"size {size} swap {i},{j}",
                        path,
                        raw[:start] + b"".join(swapped),
                        data,
                    )
                    dup = list(chunks)
                    dup[i] = chunks[j]
                    self._try(
                        "reorder",
                        f"size {size} dup {j}->{i}",
                        path,
                        raw[:start] + b"".join(dup),
                        data,
                    )
            if n > 1:
                dropped = chunks[:i] + chunks[i + 1 :]
                self._try(
                    "reorder", f"size {size} drop {i}", path, raw[:start] + b"".join(dropped), data
                )

    def plants(self, size: int, other_fs: EnvstoreFileSystem) -> None:
        """Recipients copied from other objects (same key and context; another key)."""
        path, data, raw = self.object(size, streamed=False)
        donor = f"{self.root}/donor-{size}"
        self.fs.pipe_file(donor, os.urandom(size))
        other = f"{self.root}/other-{size}"
        other_fs.pipe_file(other, os.urandom(size))
        (own,) = self.fs.envelope(path).envelope.recipients
        (foreign,) = self.fs.envelope(donor).envelope.recipients
        (alien,) = other_fs.envelope(other).envelope.recipients
        layouts = {
            "planted-first": [foreign, own],
            "planted-last": [own, foreign],
            "planted-twice-first": [foreign, foreign, own],
            "only-planted": [foreign],
            "planted+alien": [alien, foreign],
            "alien-first": [alien, own],
        }
        for label, recipients in layouts.items():
            self._store(path, raw)
            self.fs.set_recipients(path, recipients)
            self._try("plant", f"size {size} {label}", path, bytes(self.fs.fs.cat_file(path)), data)

    def short_answers(self, size: int) -> None:
        """The store answers chunk reads short or long (a truncation between locating and
        reading, a proxy): one byte short, one byte long, nothing, or cut back to the 1st, 2nd
        or 3rd chunk boundary below the answer's end (boundaries counted from the start of the
        body and from the start of the answer). Every edit changes every non-empty answer."""
        path, data, raw = self.object(size, streamed=True)
        store = self.fs.store
        offset = self.fs.envelope(path).body_offset
        orig_read, orig_many = store.read, store.read_many
        answer_through_read(store)  # local files: their lent-buffer reads go through read too

        def boundary(j: int, base: int) -> Callable[[bytes, int], bytes]:
            def cut(blob: bytes, start: int) -> bytes:
                origin = start - offset - base  # answer start relative to the boundary grid
                end = origin + len(blob)
                below = ((end - 1) // WIRE_CHUNK - (j - 1)) * WIRE_CHUNK  # j-th boundary < end
                return blob[: max(0, below - origin)]

            return cut

        edits: list[Callable[[bytes, int], bytes]] = [
            lambda blob, _s: blob[:-1],
            lambda blob, _s: blob + b"\0",
            lambda blob, _s: b"",
        ]
        edits += [boundary(j, base) for j in (1, 2, 3) for base in (PREFIX, 0)]
        try:
            for n, edit in enumerate(edits):

                def read(p: str, s: int, e: int, edit=edit) -> bytes:
                    # body reads, and the whole-object read that locates a small object
                    blob = bytes(orig_read(p, s, e))
                    return edit(blob, s) if blob and (s >= offset or e - s == len(raw)) else blob

                store.read = read  # type: ignore[method-assign]
                store.read_many = lambda ps, ss, es: [  # type: ignore[method-assign]
                    read(*a) for a in zip(ps, ss, es, strict=True)
                ]
                self._try("short-answer", f"size {size} edit {n}", path, raw, data)
        finally:
            store.read, store.read_many = orig_read, orig_many  # type: ignore[method-assign]
            del store.fetching

    def metadata(self, size: int, every_bit: bool, stride: int = 1) -> None:
        """Metadata placement (as on S3/OSS): every character of every envelope field and the
        body's first bytes bit-flipped, every field removed, doubled in another case, renamed
        to upper case (allowed: names are case-insensitive, so that one must still open)."""
        path, data, raw = self.object(size, streamed=True)
        loc = self.fs.envelope(path)
        fields, body = loc.envelope.to_fields(), raw[loc.body_offset :]
        store, self.fs.store = self.fs.store, MetadataMemoryStore(self.fs.fs)
        meta = self.fs.store.fields  # type: ignore[attr-defined]
        key = self.fs.fs._strip_protocol(path)

        def attempt(family: str, label: str, f: dict[str, str], b: bytes) -> None:
            meta[key] = f
            self._try(family, f"size {size} {label}", path, b, data)

        try:
            attempt("metadata-intact", "intact", dict(fields), body)
            for name, value in fields.items():
                for pos in range(len(value)):
                    for bit in range(8) if every_bit else (pos % 7,):
                        flipped = value[:pos] + chr(ord(value[pos]) ^ (1 << bit)) + value[pos + 1 :]
                        attempt(
                            "metadata-flip", f"{name}[{pos}]^{bit}", {**fields, name: flipped}, body
                        )
                rest = {k: v for k, v in fields.items() if k != name}
                attempt("metadata-flip", f"drop {name}", rest, body)
                attempt("metadata-flip", f"twin {name}", {**fields, name.title(): value}, body)
                attempt("metadata-rename", f"upper {name}", {**rest, name.upper(): value}, body)
            for pos in [
                *range(min(len(body), PREFIX + 16)),
                *range(PREFIX + 16, len(body), stride),
            ]:
                flipped = bytearray(body)
                flipped[pos] ^= 1 << (pos % 8)
                attempt("metadata-body-flip", f"body[{pos}]", dict(fields), bytes(flipped))
        finally:
            self.fs.store = store
            self.fs.invalidate_cache()

    def summary(self) -> dict[str, object]:
        families = sorted(self.variants)
        return {
            "variants": dict(self.variants),
            "total_variants": sum(self.variants.values()),
            "reads": sum(self.counts.values()),
            "outcomes": {
                f: {
                    r: {o: n for (g, q, o), n in sorted(self.counts.items()) if (g, q) == (f, r)}
                    for r in READERS
                }
                for f in families
            },
            "wrong_plaintext": len(self.wrong),
        }


def run(fs, other_fs, root: str, sizes=SIZES, every_bit: bool = False, stride: int = 1) -> Campaign:
    c = Campaign(fs, root)
    for size in sizes:
        c.bit_flips(size, every_bit, stride)
        c.truncations(size)
        c.extensions(size)
        c.reorders(size)
        c.plants(size, other_fs)
        c.short_answers(size)
        if getattr(fs.fs, "protocol", None) in ("memory", ("memory",)):
            c.metadata(size, every_bit, stride)
    return c


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--every-bit", action="store_true", help="all 8 bits of every byte")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--store", choices=("memory", "file"), default="memory")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        key = f"local://{keygen(Path(tmp) / 'k.key')}"
        other = f"local://{keygen(Path(tmp) / 'o.key')}"
        root = f"/tamper-{os.urandom(4).hex()}" if args.store == "memory" else f"{tmp}/store"
        opts = {"target_protocol": args.store, "skip_instance_cache": True}
        fs = fsspec.filesystem("envstore", key_uri=key, **opts)
        other_fs = fsspec.filesystem("envstore", key_uri=other, **opts)
        t0 = time.monotonic()
        c = run(fs, other_fs, root, [int(s) for s in args.sizes.split(",")], args.every_bit)
        result = c.summary()
        result["seconds"] = round(time.monotonic() - t0, 1)
        result["store"] = args.store
        print(json.dumps(result, indent=1))
        if c.wrong:
            raise SystemExit(f"WRONG PLAINTEXT: {c.wrong[:10]}")


if __name__ == "__main__":
    main()
