"""Optional packages: a missing one ends in one line naming the extra to install, and the
``oss`` name envstore registers never serves plain ``oss://`` URLs (issue 13 item 4).

Each case runs in a fresh interpreter with the module hidden (``sys.modules[name] = None``
makes every ``import name`` fail as if it were not installed)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(hidden: list[str], code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    prelude = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in hidden)
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def one_line_error(code: str) -> str:
    """Code that runs ``code`` and prints ``<ExceptionType>|<message>`` of what it raises."""
    return (
        "try:\n"
        + textwrap.indent(textwrap.dedent(code), "    ")
        + "\nexcept BaseException as exc:\n"
        "    print(type(exc).__name__ + '|' + str(exc))\n"
        "else:\n"
        "    print('no error')\n"
    )


def error_of(hidden: list[str], code: str, tmp_path: Path) -> tuple[str, str]:
    out = run(hidden, one_line_error(code), tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout  # one line
    kind, _, msg = lines[0].partition("|")
    return kind, msg


OSS_EXTRA = 'pip install "envstore[oss]"'


def test_oss2_missing_names_the_oss_extra(tmp_path: Path) -> None:
    for code in (
        "import fsspec; fsspec.filesystem('envstore', target_protocol='oss', key_uri='env://K')",
        "import fsspec; fsspec.url_to_fs('envstore::oss://bucket/k', key_uri='env://K')",
        "import pandas as pd; pd.read_csv('envstore::oss://bucket/k.csv')",
    ):
        kind, msg = error_of(["oss2", "ossfs"], code, tmp_path)
        assert kind == "ConfigError" and OSS_EXTRA in msg and "oss2" in msg, msg
        assert "EntryPoint" not in msg


@pytest.mark.parametrize("oss2_installed", [True, False])
def test_plain_oss_urls_are_left_to_ossfs(tmp_path: Path, oss2_installed: bool) -> None:
    """Without ossfs, a plain oss:// URL gets fsspec's own "Install ossfs" error, never
    envstore's internal OSS filesystem, whether or not oss2 is installed."""
    hidden = ["ossfs"] if oss2_installed else ["ossfs", "oss2"]
    for code in (
        "import fsspec; fsspec.filesystem('oss', endpoint='http://127.0.0.1:9')",
        "import fsspec; fsspec.open('oss://bucket/k').open()",
        "import fsspec; fsspec.url_to_fs('oss://bucket/k')",
    ):
        kind, msg = error_of(hidden, code, tmp_path)
        assert kind == "ImportError", msg
        assert msg.startswith("Install ossfs to access Alibaba Object Storage System"), msg


def test_envstore_oss_urls_use_envstore_s_own_filesystem(tmp_path: Path) -> None:
    """In a fresh process (envstore not imported first), without ossfs."""
    out = run(
        ["ossfs"],
        """
        import fsspec
        fs, path = fsspec.url_to_fs(
            "envstore::oss://bucket/k", key_uri="env://K", oss={"endpoint": "http://127.0.0.1:9"}
        )
        print(type(fs.fs).__module__, type(fs.fs).__name__, path)
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["envstore.stores.oss", "OSSFileSystem", "bucket/k"]


def test_with_ossfs_installed_plain_oss_is_ossfs(tmp_path: Path) -> None:
    """A stand-in ``ossfs`` module: the ``oss`` protocol resolves to its class, and
    envstore::oss:// still uses envstore's own oss2 filesystem."""
    out = run(
        [],
        """
        import sys, types
        from fsspec import AbstractFileSystem
        class OSSFileSystem(AbstractFileSystem):
            protocol = ("oss",)
        sys.modules["ossfs"] = types.SimpleNamespace(OSSFileSystem=OSSFileSystem)
        import fsspec
        print(fsspec.get_filesystem_class("oss") is OSSFileSystem)
        fs, _ = fsspec.url_to_fs(
            "envstore::oss://bucket/k", key_uri="env://K", oss={"endpoint": "http://127.0.0.1:9"}
        )
        print(type(fs.fs).__module__)
        from envstore.stores import inner_filesystem  # public: plain objects, envstore's class
        print(type(inner_filesystem("oss", {"endpoint": "http://127.0.0.1:9"})).__module__)
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "envstore.stores.oss", "envstore.stores.oss"]


def test_s3fs_missing_names_the_s3_extra(tmp_path: Path) -> None:
    code = "import fsspec; fsspec.filesystem('envstore', target_protocol='s3', key_uri='env://K')"
    kind, msg = error_of(["s3fs"], code, tmp_path)
    assert kind == "ConfigError" and 'pip install "envstore[s3]"' in msg, msg
    # a chained URL is parsed by fsspec before envstore runs: fsspec's own one-line message
    code = "import fsspec; fsspec.url_to_fs('envstore::s3://bucket/k', key_uri='env://K')"
    kind, msg = error_of(["s3fs"], code, tmp_path)
    assert (kind, msg) == ("ImportError", "Install s3fs to access S3")
    # envstore's own entry points (helpers, CLI) name the extra for URLs too
    code = "import envstore; envstore.inspect('envstore::s3://bucket/k', key_uri='env://K')"
    kind, msg = error_of(["s3fs"], code, tmp_path)
    assert kind == "ConfigError" and 'pip install "envstore[s3]"' in msg and "s3fs" in msg, msg
    cli = "from envstore.cli import main; main(['ls', 'envstore::s3://b/'])"
    out = run(["s3fs"], cli, tmp_path)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert 'pip install "envstore[s3]"' in out.stderr


@pytest.mark.parametrize(
    ("hidden", "uri", "extra"),
    [
        ("boto3", "awskms://alias/data", "aws"),
        ("alibabacloud_kms20160120", "alikms://alias/data", "alikms"),
        ("alibabacloud_credentials", "alikms://alias/data", "alikms"),
        ("sdk", "alikms-instance://key-id", "alikms-instance"),
    ],
)
def test_kms_sdk_missing_names_its_extra(tmp_path: Path, hidden: str, uri: str, extra: str):
    code = f"""
    import fsspec
    fs = fsspec.filesystem("envstore", target_protocol="memory", key_uri={uri!r})
    fs.pipe_file("/extras/a", b"x")
    """
    kind, msg = error_of([hidden], code, tmp_path)
    assert kind == "ConfigError" and f'pip install "envstore[{extra}]"' in msg, msg


def test_cli_without_click_names_the_cli_extra(tmp_path: Path) -> None:
    out = run(["click"], "from envstore.cli import main", tmp_path)
    assert out.returncode == 1
    assert out.stderr == (
        'envstore: error: the command line needs click: pip install "envstore[cli]"\n'
    )


def test_demo_without_pandas_names_the_demo_extra(tmp_path: Path) -> None:
    out = run(["pandas"], "from envstore.cli import main; main(['demo'])", tmp_path)
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and 'pip install "envstore[demo]"' in lines[0], out.stderr
