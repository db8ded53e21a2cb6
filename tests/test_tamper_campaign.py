"""A bounded tamper campaign in the suite (the full one: ``python -m tests.tamper``).

Every altered variant read whole (``open().read()``, ``cat_file``, an end-relative read) must
fail with an envstore error; a range read may return the exact plaintext of chunks the
alteration did not touch; nothing may ever return other bytes."""

from __future__ import annotations

import fsspec
import pytest

from envstore.format import CHUNK
from tests.tamper import Campaign, run

WHOLE = ("open", "cat", "tail")


def _check(c: Campaign) -> dict[str, object]:
    summary = c.summary()
    assert c.wrong == [] and summary["wrong_plaintext"] == 0
    for (family, reader, outcome), n in c.counts.items():
        if family in ("metadata-intact", "metadata-rename"):  # the same envelope: must open
            assert outcome == "plaintext", (family, reader, outcome, n)
        if family in ("plant", "metadata-intact", "metadata-rename") or reader not in WHOLE:
            continue
        assert outcome != "plaintext", (family, reader, n)  # every variant is altered
    return summary


@pytest.fixture
def fss(memroot: str, key_uri: str, other_key_uri: str):
    opts = {"target_protocol": "memory", "skip_instance_cache": True}
    return (
        fsspec.filesystem("envstore", key_uri=key_uri, **opts),
        fsspec.filesystem("envstore", key_uri=other_key_uri, **opts),
        memroot,
    )


def test_bounded_campaign_never_releases_wrong_plaintext(fss) -> None:
    fs, other, root = fss
    c = Campaign(fs, root)
    for size in (0, 1):
        c.bit_flips(size, every_bit=False)  # every byte of the stored object, header included
    c.bit_flips(CHUNK + 1, every_bit=False, stride=61)
    for size in (0, 1, CHUNK, CHUNK + 1):
        c.truncations(size)
        c.extensions(size)
        c.reorders(size)
        c.plants(size, other)
        c.short_answers(size)
    for size in (0, CHUNK + 1):
        c.metadata(size, every_bit=False, stride=97)
    summary = _check(c)
    assert summary["total_variants"] > 2000
    # planted recipients: the object opens exactly when an intact recipient is present
    plant = {(r, o): n for (f, r, o), n in c.counts.items() if f == "plant"}
    assert plant[("open", "plaintext")] == 4 * 4  # four layouts with the intact one, 4 sizes
    assert plant[("open", "IntegrityError")] == 2 * 4


@pytest.mark.slow
def test_full_campaign_on_local_files(tmp_path, key_uri: str, other_key_uri: str) -> None:
    opts = {"target_protocol": "file", "skip_instance_cache": True}
    fs = fsspec.filesystem("envstore", key_uri=key_uri, **opts)
    other = fsspec.filesystem("envstore", key_uri=other_key_uri, **opts)
    (tmp_path / "store").mkdir()
    c = run(fs, other, str(tmp_path / "store"), sizes=(0, 1, CHUNK - 1, CHUNK + 1), stride=7)
    _check(c)
