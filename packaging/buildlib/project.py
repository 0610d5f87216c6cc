"""Corral itself in the runtime: a wheel of the repository (at the requested version, patched in
a copy, never in the repository), its dependencies, compiled .pyc and the console scripts."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from buildlib.errors import BuildError
from buildlib.proc import run

# The agent never imports these base dependencies: they are the operator CLI's (corral).
AGENT_SKIPS = {"click", "rich", "tomli-w"}
AGENT_BUILD_ONLY = ("cffi", "pycparser")
SOURCES = ("pyproject.toml", "README.md", "agent", "control_plane")
OWN = ("agent", "control_plane")  # keep their sources: tracebacks of our code show the line
# What an idle agent imports: the daemon, its transports, what they load once connected.  The
# standard-library modules and dependencies these reach are left out of the runtime's zip
# (runtime.idle_tops): importing them from the zip would cost the daemon's memory and start.
AGENT_IDLE_IMPORTS = (
    "agent.cli",
    "agent.daemon",
    "agent.facts",
    "agent.transport.auto",
    "agent.transport.https",
    "agent.transport.websocket",
    "concurrent.futures.thread",
    "encodings.idna",
    "glob",
    "queue",
    "shlex",
)
VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.+~-]*$")


def repo_version(repo: Path) -> str:
    text = (repo / "agent" / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not m:
        raise BuildError("agent/__init__.py has no __version__")
    return m.group(1)


def build_wheel(repo: Path, version: str, work: Path) -> Path:
    """A wheel of the repository whose agent reports ``version``."""
    src = work / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = repo / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    _set_version(src / "agent" / "__init__.py", "__version__", version)
    _set_version(src / "pyproject.toml", "version", version)
    out = work / "wheel"
    shutil.rmtree(out, ignore_errors=True)
    isolation = ["--no-build-isolation"] if _has_setuptools() else []
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", out, src])
    wheels = list(out.glob("corral-*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"building the wheel left {len(wheels)} wheels in {out}")
    return wheels[0]


def _has_setuptools() -> bool:
    """Whether this Python can build the wheel itself (setuptools >= 68, bdist_wheel); if
    not, pip builds it in an isolated environment (fetching setuptools)."""
    try:
        major = int(metadata.version("setuptools").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    if major >= 71:  # bdist_wheel built in
        return True
    return major >= 68 and importlib.util.find_spec("wheel") is not None


def requirements(repo: Path, side: str) -> list[str]:
    """The agent: the base dependencies it imports; the server: all of base and ``server``."""
    project = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base: list[str] = project["dependencies"]
    if side == "server":
        return [*base, *project["optional-dependencies"]["server"]]
    return [d for d in base if _req_name(d) not in AGENT_SKIPS]


def _req_name(req: str) -> str:
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
    return (m.group(0) if m else req).lower().replace("_", "-")


def _pip(site: Path) -> list[str | Path]:
    # The builder's pip: the same Python version as the runtime, so the same wheels.
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-compile",
        "--no-warn-script-location",
        "--target",
        site,
    ]


def install_dependencies(site: Path, reqs: list[str], side: str) -> None:
    run([*_pip(site), *reqs])
    if side == "agent":
        # PyNaCl's compiled module needs only _cffi_backend at run time; cffi's Python half
        # (and its C parser) serve building it.
        for name in AGENT_BUILD_ONLY:
            shutil.rmtree(site / name, ignore_errors=True)
    shutil.rmtree(site / "bin", ignore_errors=True)  # pip's scripts name the build's python
    for tests in [*site.glob("*/tests"), *site.glob("*/benchmarks")]:
        shutil.rmtree(tests)
    for cache in site.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def install_corral(site: Path, wheel: Path, side: str) -> None:
    run([*_pip(site), "--no-deps", wheel])
    shutil.rmtree(site / "bin", ignore_errors=True)
    if side == "agent":
        shutil.rmtree(site / "control_plane")  # the agent never imports the server


def _compile(python: Path, runtime: Path, installed_at: str, jobs: int = 0) -> list[str | Path]:
    # unchecked-hash: a .pyc is used as is (package files do not change under it), never
    # rewritten at run time, so nothing is left in /opt that the package does not own.
    return [
        python,
        "-I",
        "-B",
        "-m",
        "compileall",
        "-q",
        "-f",
        "-j",
        str(jobs),
        "--invalidation-mode",
        "unchecked-hash",
        "-s",
        runtime,
        "-p",
        installed_at,
    ]


def compile_libraries(python: Path, runtime: Path, installed_at: str, optimize: bool) -> None:
    """The standard library and the dependencies ship as .pyc only, next to where the .py
    was (as the official embeddable CPython does): half the installed size.  The .pyc name
    the installed paths, for tracebacks.  A data file named .py that is not Python (a
    template) does not compile: it stays a .py.

    ``optimize`` (the agent's): compiled as ``python -OO`` would, without docstrings and
    asserts: 1.1 MB less on disk and in the daemon's memory.  The interpreter loads a
    sourceless .pyc whatever its level; Corral's own code is compiled as usual."""
    lib = runtime / "lib"
    level = ["-o", "2"] if optimize else []
    run([*_compile(python, runtime, installed_at), "-b", *level, lib], check=False)
    for source in lib.rglob("*.py"):
        if source.with_suffix(".pyc").exists():
            source.unlink()


def compile_corral(python: Path, runtime: Path, installed_at: str, site: Path) -> None:
    """Corral's own packages keep their sources (tracebacks of our code show the line), with
    their .pyc in __pycache__."""
    own = [site / name for name in OWN if (site / name).is_dir()]
    # One process: the agent's runtime has no multiprocessing (runtime.AGENT_STDLIB_DROP).
    # All of it compiles, or the build fails.
    run([*_compile(python, runtime, installed_at, jobs=1), *own])


def console_script(runtime: Path, installed_at: str, version: str, name: str, func: str) -> Path:
    """``runtime/bin/NAME``: a script whose shebang is the vendored interpreter (isolated mode:
    the node's PYTHON* variables and user site-packages cannot change the daemon)."""
    module, attr = func.split(":")
    script = runtime / "bin" / name
    script.write_text(
        f"#!{installed_at}/bin/python{version} -I\n"
        "import sys\n"
        f"from {module} import {attr}\n"
        "if __name__ == '__main__':\n"
        f"    sys.exit({attr}())\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def _set_version(path: Path, key: str, version: str) -> None:
    """``key = "..."`` (the first, at a line's start) in the staged copy becomes ``version``."""
    text = path.read_text(encoding="utf-8")
    pattern = rf'^{re.escape(key)} = "[^"]+"'
    path.write_text(re.sub(pattern, f'{key} = "{version}"', text, count=1, flags=re.M), "utf-8")
