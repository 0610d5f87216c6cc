"""``packaging/build FORMAT… [--version V] [--out DIR]``: stage each side's runtime once, then
package it in every requested format (agents first: the server packages carry them)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from buildlib import nfpm, project, runtime
from buildlib.errors import BuildError

REPO = Path(__file__).resolve().parents[2]
ALL = ("deb", "rpm", "apk", "arch")
# side -> (package name, console scripts {name: entry point})
SIDES = {
    "agent": ("corral-agent", {"corral-agent": "agent.cli:main"}),
    "server": (
        "corral-server",
        {
            "corral-server": "control_plane.server_cli:main",
            "corral": "control_plane.cli.main:main",
            "corral-agent": "agent.cli:main",
        },
    ),
}
SCRIPTS = {
    "postinstall": "postinstall",
    "preremove": "preremove",
    "postremove": "postremove",
    "postupgrade": "postinstall",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="packaging/build", description=__doc__)
    p.add_argument("format", nargs="+", choices=[*ALL, "all"], help="one or more, or all")
    p.add_argument(
        "--version",
        help="the version the packages (and the agent) report (default: agent/__init__.py's)",
    )
    p.add_argument("--out", type=Path, default=REPO / "dist", help="default: dist/")
    p.add_argument(
        "--python",
        default=os.environ.get("CORRAL_BUILD_PYTHON", sys.executable),
        help="the CPython installation to vendor (default: this one's base)",
    )
    p.add_argument("--only", choices=sorted(SIDES), help="build one side's packages only")
    p.add_argument("--work", type=Path, help="staging directory to use and keep (debugging)")
    p.add_argument(
        "--cache",
        type=Path,
        help="keep the runtimes without Corral here and reuse "
        "them while the interpreter, the dependencies and the build are the same",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        build(args)
    except BuildError as exc:
        print(f"packaging/build: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def build(args: argparse.Namespace) -> list[Path]:
    version = args.version or project.repo_version(REPO)
    if not project.VERSION_RE.match(version):
        raise BuildError(f"bad version {version!r}: digits first, then [0-9A-Za-z.+~-]")
    for tool in ("patchelf", "strip", "objdump", "ldd"):
        if not shutil.which(tool):
            raise BuildError(f"{tool} is not installed (apt-get install patchelf binutils)")
    nfpm_bin = nfpm.find_nfpm()
    interp = runtime.probe(args.python)
    builder = "{}.{}".format(*sys.version_info[:2])
    if interp.version != builder:
        raise BuildError(f"run the build with Python {interp.version} (pip installs its wheels)")
    formats = [f for f in ALL if f in args.format or "all" in args.format]
    sides = [args.only] if args.only else list(SIDES)
    arch = nfpm.goarch()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="corral-build-"))
    built: list[Path] = []
    try:
        wheel = project.build_wheel(REPO, version, work)
        agents: list[Path] = []
        for side in sides:
            started = time.monotonic()
            name = SIDES[side][0]
            rt = work / side / "runtime"
            glibc, libs = stage_side(interp, rt, wheel, side, args.cache)
            for fmt in formats:
                stage = work / side / fmt
                write_stage(stage, name, version, fmt, arch, side)
                pkg = nfpm.Package(
                    name, version, fmt, arch, stage, rt, tuple(agents) if side == "server" else ()
                )
                path = nfpm.package(nfpm_bin, REPO, pkg, glibc, out)
                built.append(path)
                if side == "agent":
                    agents.append(path)
                print(f"{path}  {path.stat().st_size / 1e6:.1f} MB")
            print(
                f"  {name}: runtime {du(rt) / 1e6:.1f} MB, needs glibc >= {glibc}, "
                f"vendored {', '.join(libs) or 'no libraries'} "
                f"({time.monotonic() - started:.0f} s)"
            )
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return built


def base_runtime(
    interp: runtime.Interpreter, side: str, cache: Path | None, work: Path
) -> tuple[Path, list[str]]:
    """The side's runtime without Corral itself: the trimmed, relocatable interpreter and the
    dependencies, compiled and zipped.  Reused from ``--cache`` when its inputs are the same
    (it does not depend on the version being built)."""
    reqs = project.requirements(REPO, side)
    installed_at = f"/opt/{SIDES[side][0]}/runtime"
    key = hashlib.sha256()
    for part in (str(interp), side, *reqs):
        key.update(part.encode() + b"\0")
    for source in sorted((REPO / "packaging" / "buildlib").glob("*.py")):
        key.update(source.read_bytes())
    root = cache if cache else work
    base = root / f"runtime-{side}-{key.hexdigest()[:16]}"
    libs_file = base / ".vendored"
    if cache and libs_file.exists():
        return base, libs_file.read_text().split()
    tmp = root / f"{base.name}.tmp"
    python = runtime.stage(interp, tmp, installed_at)
    site = tmp / "lib" / f"python{interp.version}" / "site-packages"
    project.install_dependencies(site, reqs, side)
    runtime.strip_all(site)
    libs = runtime.vendor_libraries(tmp)
    runtime.check_extensions(python)
    project.compile_libraries(python, tmp, installed_at, optimize=side == "agent")
    if side == "agent":
        runtime.trim_stdlib(tmp, interp.version, runtime.AGENT_STDLIB_DROP)
    keep = (
        runtime.idle_tops(python, interp.version, project.AGENT_IDLE_IMPORTS, REPO)
        if side == "agent"
        else set()
    )
    runtime.zip_libraries(tmp, interp.version, project.OWN, keep)
    runtime.check_extensions(python)
    (tmp / ".vendored").write_text(" ".join(libs))
    shutil.rmtree(base, ignore_errors=True)
    tmp.rename(base)
    return base, libs


def stage_side(
    interp: runtime.Interpreter, rt: Path, wheel: Path, side: str, cache: Path | None
) -> tuple[str, list[str]]:
    """The side's runtime with Corral (at the version built) in it, in ``rt``."""
    base, libs = base_runtime(interp, side, cache, rt.parent)
    if rt.exists():
        shutil.rmtree(rt)
    shutil.copytree(base, rt, symlinks=True, ignore=shutil.ignore_patterns(".vendored"))
    installed_at = f"/opt/{SIDES[side][0]}/runtime"
    python = rt / "bin" / f"python{interp.version}"
    site = rt / "lib" / f"python{interp.version}" / "site-packages"
    project.install_corral(site, wheel, side)
    for script, entry in SIDES[side][1].items():
        project.console_script(rt, installed_at, interp.version, script, entry)
    project.compile_corral(python, rt, installed_at, site)
    if side == "agent":
        runtime.check_package(python, "agent")
    else:
        runtime.check_import(python, "control_plane.serve")
    return runtime.min_glibc(rt), libs


def write_stage(stage: Path, name: str, version: str, fmt: str, arch: str, side: str) -> None:
    (stage / "scripts").mkdir(parents=True, exist_ok=True)
    info = {"name": name, "version": version, "format": fmt, "arch": nfpm.FORMATS[fmt][3][arch]}
    (stage / "PACKAGE").write_text(json.dumps(info) + "\n", encoding="utf-8")
    common = (REPO / "packaging" / "scripts" / "common.sh").read_text(encoding="utf-8")
    for script, source in SCRIPTS.items():
        body = (REPO / "packaging" / "scripts" / f"{side}-{source}.sh").read_text(encoding="utf-8")
        kind = f"{fmt}-upgrade" if script == "postupgrade" else fmt
        head = f"#!/bin/sh\n# {name} {version}: {script}\nset -e\nPKG_FORMAT={kind}\n"
        text = f"{head}\n{common}\n{body}"
        (stage / "scripts" / script).write_text(text, encoding="utf-8")
        (stage / "scripts" / script).chmod(0o755)


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())
