"""The shape rules of the code (issue 11), measured with ast so they hold for later code too:
no module in envstore/ over 500 lines, no function over 60 lines, and the tools built on the
filesystem (CLI, transfer helpers, demo, migration) use no private member of another module's
objects (``fs._reader``, ``reader._dec``...): they go through public APIs."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "envstore"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
#: modules (files or packages, relative to envstore/) that may use only public members
TOOLS = ("cli", "cli.py", "transfer.py", "demo.py", "migration")
#: the store adapters are being reshaped in issue 11 part 2 (s11-stores)
STORES = "stores"


def _modules(stores: bool) -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if (p.relative_to(PACKAGE).parts[0] == STORES) == stores
    )


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1  # def line to end
            if length > MAX_FUNCTION_LINES:
                out.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length})")
    return out


def _too_long(path: Path) -> list[str]:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    return [f"{path.relative_to(PACKAGE)} ({lines} lines)"] if lines > MAX_MODULE_LINES else []


def _private_uses(path: Path) -> list[str]:
    """``x._name`` where ``x`` is not ``self``/``cls`` (dunders are fine)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not (node.attr.startswith("__") and node.attr.endswith("__"))
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            out.append(f"{path.relative_to(PACKAGE)}:{node.lineno} .{node.attr}")
    return out


def test_checks_catch_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    body = "\n".join(f"    x = {i}" for i in range(MAX_FUNCTION_LINES))
    bad.write_text(f"def f(fs):\n{body}\n    return fs._reader(x)\n" + "#\n" * MAX_MODULE_LINES)
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path
    try:
        assert _long_functions(bad) == ["bad.py:1 f (62)"]
        assert _too_long(bad)
        assert _private_uses(bad) == ["bad.py:62 ._reader"]
    finally:
        PACKAGE = saved


def test_no_module_over_500_lines() -> None:
    assert [m for p in _modules(stores=False) for m in _too_long(p)] == []


def test_no_function_over_60_lines() -> None:
    assert [f for p in _modules(stores=False) for f in _long_functions(p)] == []


def test_tools_use_no_private_members() -> None:
    tools = [p for p in _modules(stores=False) if p.relative_to(PACKAGE).parts[0] in TOOLS]
    assert tools, "no tool modules found"
    assert [u for p in tools for u in _private_uses(p)] == []


def test_stores_shape() -> None:
    found = [m for p in _modules(stores=True) for m in _too_long(p) + _long_functions(p)]
    assert found == []
