"""The dependency directions of ARCHITECTURE.md, checked on every import statement (module
level or inside a function, absolute or relative): a layer that reaches up fails here."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (package whose modules are checked, forbidden import prefixes, why)
RULES = [
    (
        "control_plane/cli",
        ("control_plane.services", "control_plane.store", "control_plane.api"),
        "the CLI is an HTTP client of the API; shared rules live in control_plane/rules",
    ),
    ("agent", ("control_plane",), "the agent runs on nodes and never needs the server"),
    (
        "control_plane/services",
        ("fastapi", "starlette", "uvicorn", "control_plane.api", "control_plane.cli"),
        "the domain does not know the HTTP framework",
    ),
    (
        "control_plane/store",
        ("control_plane.services", "control_plane.api", "control_plane.cli"),
        "storage is the bottom layer",
    ),
    (
        "control_plane/rules",
        (
            "control_plane.services",
            "control_plane.store",
            "control_plane.api",
            "control_plane.cli",
            "control_plane.security",
            "fastapi",
            "sqlalchemy",
        ),
        "pure rules shared by the server and the CLI",
    ),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line, the absolute module names it may bring) of every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = (
        module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else (module_name(path))
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, [alias.name]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            # ``from control_plane import services`` brings control_plane.services
            yield node.lineno, [target, *(f"{target}.{alias.name}" for alias in node.names)]


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, names in imports(path):
            bad = [n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden)]
            if bad:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {bad[0]}")
    return found


@pytest.mark.parametrize(("package", "forbidden", "why"), RULES, ids=[r[0] for r in RULES])
def test_no_layer_imports_upwards(package: str, forbidden: tuple[str, ...], why: str) -> None:
    assert (ROOT / package).is_dir()
    found = violations(package, forbidden)
    assert not found, f"{why}:\n" + "\n".join(found)


def test_the_checker_sees_every_form_of_import(tmp_path: Path) -> None:
    """A check that could not fail would prove nothing: each form is caught."""
    cli = ROOT / "control_plane" / "cli"
    sample = cli / "_layering_sample.py"
    sample.write_text(
        "import control_plane.store.db\n"
        "from control_plane import services\n"
        "from ..api import app\n"
        "def later():\n"
        "    from control_plane.services.nodes import x\n"
    )
    try:
        found = violations("control_plane/cli", RULES[0][1])
    finally:
        sample.unlink()
    assert [f.split(" imports ")[1] for f in found] == [
        "control_plane.store.db",
        "control_plane.services",
        "control_plane.api",
        "control_plane.services.nodes",
    ]
