"""The public API is typed for users: py.typed ships, mypy sees real signatures."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mypy")

SNIPPET = """\
import envstore

reveal_type(envstore.upload)
reveal_type(envstore.verify)
reveal_type(envstore.keygen)
reveal_type(envstore.EnvstoreFileSystem)
written: int = envstore.upload("a.txt", "envstore::memory://b/a.txt")
envstore.inspect(42)
"""


def _mypy(tmp_path: Path, source: str) -> str:
    snippet = tmp_path / "user_code.py"
    snippet.write_text(source)
    env = dict(os.environ, MYPYPATH=str(ROOT))  # mypy resolves `envstore` to this checkout
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--follow-imports=silent",
            str(snippet),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    return out.stdout + out.stderr


def test_public_api_has_real_signatures_for_mypy(tmp_path: Path) -> None:
    out = _mypy(tmp_path, SNIPPET).replace("builtins.", "")
    lines = out.splitlines()

    def at(line: int) -> str:
        return "\n".join(x for x in lines if x.startswith(f"user_code.py:{line}:"))

    # the lazy attributes are the real functions, not Any (older mypy says builtins.str)
    assert "def (lpath: str | os.PathLike[str], url: str, recursive: bool =" in at(3)
    assert at(3).endswith('-> list[str]"')
    assert "def (url: str, recursive: bool =, *, jobs: int =" in at(4)
    assert at(4).endswith('-> list[dict[str, Any]]"')
    assert "-> pathlib.Path" in at(5)
    assert "envstore.fs.EnvstoreFileSystem" in at(6)
    assert 'Revealed type is "Any"' not in out
    # and wrong uses are errors
    assert "Incompatible types in assignment" in at(7) and "[assignment]" in at(7)
    assert '"inspect" has incompatible type "int"' in at(8)


def test_envstore_package_itself_passes_mypy(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_wheel_ships_py_typed(tmp_path: Path) -> None:
    assert (ROOT / "envstore" / "py.typed").is_file()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("envstore-*.whl")
    assert "envstore/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_runtime_import_stays_lazy() -> None:
    """The TYPE_CHECKING imports are for type checkers only: `import envstore` stays light."""
    code = (
        "import sys, envstore\n"
        "heavy = [m for m in ('envstore.transfer', 'envstore.fs', 'envstore.keys.local')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert envstore.upload.__module__ == 'envstore.transfer'\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
