"""The vendored, relocatable CPython: copied from the build host, trimmed, made to run anywhere.

The build host's CPython (a self-built one, e.g. pyenv's: prefix/{bin,lib}, ideally
``--enable-shared``) is copied into ``STAGE/runtime``, the parts a daemon never needs are left
out, its binaries are stripped, their RPATH becomes ``$ORIGIN``-relative, and every shared
library the interpreter and its extensions load that is not glibc's is copied into
``runtime/lib``: the only thing left to the node is glibc itself (see ``min_glibc``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from buildlib.errors import BuildError
from buildlib.proc import ENV, run

# Left out of the standard library: tests, GUIs, the 2to3 and pip bootstraps, the static
# library and the build configuration, curses/readline (no terminal UI in a daemon), distutils
# (nothing installs packages into the runtime after the build), pydoc's help topics, and crypt
# (deprecated; its libcrypt alone would raise the glibc the packages need to 2.36).  Of the
# extensions: the CJK codecs (a daemon speaks UTF-8) and audioop.  (_decimal stays: the
# agent's dependencies import decimal, and its pure-Python fallback costs more memory.)
STDLIB_DROP = {
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "site-packages",
    "curses",
    "turtle.py",
    "__pycache__",
    "__phello__",
    "distutils",
    "pydoc_data",
    "crypt.py",
}
STDLIB_DROP_PREFIX = ("config-",)
# Left out of the agent's runtime as well: what neither the agent nor its dependencies import
# (checked by the build: every agent module imports on the staged runtime), the development
# tools (debugger, profilers, doctest, unittest, pydoc), mail and network clients the agent
# does not speak, old media formats, and the pure-Python fallbacks of extensions it has
# (_pydecimal, _pyio).  The server keeps them (uvicorn's workers use multiprocessing).
AGENT_STDLIB_DROP = {
    "unittest", "doctest", "pydoc", "pdb", "profile", "cProfile", "pstats",
    "trace", "timeit", "tabnanny", "pyclbr", "zipapp", "multiprocessing",
    "xmlrpc", "wsgiref", "mailbox", "imaplib", "nntplib", "smtplib", "poplib",
    "ftplib", "telnetlib", "cgi", "cgitb", "mailcap", "dbm", "shelve",
    "xdrlib", "chunk", "sndhdr", "imghdr", "aifc", "sunau", "wave",
    "_pydecimal", "_pyio",
}  # fmt: skip
DYNLOAD_DROP = re.compile(
    r"^(_test\w*|_ctypes_test|_xxtestfuzz|xxlimited\w*|_tkinter|_curses\w*|readline|nis"
    r"|ossaudiodev|_xxsubinterpreters|_crypt|_codecs_\w+|_multibytecodec|audioop)\."
)
# glibc's own libraries: the node provides them (every other library is vendored).
GLIBC = re.compile(
    r"^(linux-vdso|linux-gate|ld-linux[\w.-]*|libc|libm|libdl|libpthread|librt|libutil|libresolv"
    r"|libanl|libnsl)\.so(\.[0-9.]+)?$"
)
ELF_MAGIC = b"\x7fELF"

_QUERY = """
import json, sys, sysconfig
v = sysconfig.get_config_var
print(json.dumps({
    "prefix": sys.base_prefix, "executable": sys.executable,
    "version": "%d.%d" % sys.version_info[:2],
    "stdlib": sysconfig.get_path("stdlib"), "ldlibrary": v("LDLIBRARY"),
    "instsoname": v("INSTSONAME"), "libdir": v("LIBDIR"), "shared": bool(v("Py_ENABLE_SHARED")),
}))
"""


@dataclass(frozen=True)
class Interpreter:
    prefix: Path
    version: str  # "3.11"
    stdlib: Path
    libdir: Path
    soname: str | None  # libpython3.11.so.1.0 when built with --enable-shared

    @property
    def exe_name(self) -> str:
        return f"python{self.version}"


def probe(python: str) -> Interpreter:
    """What the interpreter to vendor is and where its parts are."""
    exe = shutil.which(python) or python
    try:
        out = subprocess.run(
            [exe, "-c", _QUERY], capture_output=True, text=True, check=True, env=ENV
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"cannot run {python}: {exc}") from None
    info = json.loads(out)
    prefix = Path(info["prefix"])
    stdlib = Path(info["stdlib"])
    if prefix == Path("/usr") or not stdlib.is_relative_to(prefix):
        raise BuildError(
            f"{python} is the distribution's Python ({prefix}); the packages vendor a "
            "self-contained CPython installation (e.g. pyenv's): pass --python PATH"
        )
    exe_path = prefix / "bin" / f"python{info['version']}"
    if not exe_path.is_file():
        raise BuildError(f"{exe_path} not found: not a standard CPython installation")
    soname = info["instsoname"] if info["shared"] else None
    return Interpreter(prefix, info["version"], stdlib, Path(info["libdir"]), soname)


def stage(interp: Interpreter, dest: Path, installed_at: str) -> Path:
    """Copy, trim, strip and relocate the interpreter into ``dest``; return its python.

    The interpreter finds libpython through ``$ORIGIN/../lib``, then through the path the
    package installs it at: the dynamic loader resolves a program's own ``$ORIGIN`` through
    /proc/self/exe, which a chroot or an early-boot environment may not have mounted."""
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "bin").mkdir(parents=True)
    (dest / "lib").mkdir()
    python = dest / "bin" / interp.exe_name
    shutil.copy2(interp.prefix / "bin" / interp.exe_name, python)
    os.symlink(interp.exe_name, dest / "bin" / "python3")
    os.symlink(interp.exe_name, dest / "bin" / "python")
    if interp.soname:
        shutil.copy2(interp.libdir / interp.soname, dest / "lib" / interp.soname)
    stdlib = dest / "lib" / f"python{interp.version}"
    shutil.copytree(interp.stdlib, stdlib, symlinks=True, ignore=_stdlib_ignore)
    (stdlib / "site-packages").mkdir()
    for elf in elf_files(dest):
        run(["strip", "--strip-unneeded", elf])
    run(["patchelf", "--set-rpath", f"$ORIGIN/../lib:{installed_at}/lib", python])
    if interp.soname:
        run(["patchelf", "--set-rpath", "$ORIGIN", dest / "lib" / interp.soname])
    for ext in (stdlib / "lib-dynload").iterdir():
        run(["patchelf", "--set-rpath", "$ORIGIN/../..", ext])
    return python


def trim_stdlib(runtime: Path, version: str, names: set[str]) -> None:
    """Remove these top-level modules and packages from the staged standard library (once
    compiled: compileall itself needs multiprocessing)."""
    stdlib = runtime / "lib" / f"python{version}"
    for name in names:
        if (stdlib / name).is_dir():
            shutil.rmtree(stdlib / name)
        for suffix in (".py", ".pyc"):
            (stdlib / f"{name}{suffix}").unlink(missing_ok=True)


def _stdlib_ignore(folder: str, names: list[str]) -> set[str]:
    dropped = {n for n in names if n in STDLIB_DROP or n.startswith(STDLIB_DROP_PREFIX)}
    if folder.endswith("lib-dynload"):
        dropped |= {n for n in names if DYNLOAD_DROP.match(n)}
    return dropped | {n for n in names if n.endswith((".pyc", ".a"))}


def elf_files(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                if f.read(4) == ELF_MAGIC:
                    found.append(path)
    return found


def vendor_libraries(runtime: Path) -> list[str]:
    """Copy every non-glibc library an ELF file of the runtime needs into runtime/lib and
    point the file at it (``$ORIGIN``-relative).  Returns the copied libraries' names."""
    libdir = runtime / "lib"
    copied: list[str] = []
    pending = elf_files(runtime)
    while pending:
        elf = pending.pop()
        missing = [(name, path) for name, path in _needed(elf) if not _inside(path, runtime)]
        if not missing:
            continue
        for name, path in missing:
            if path is None:
                raise BuildError(f"{elf.name} needs {name}, which the build host lacks")
            target = libdir / name
            if not target.exists():
                shutil.copy2(path, target)
                target.chmod(0o755)
                run(["strip", "--strip-unneeded", target])
                run(["patchelf", "--set-rpath", "$ORIGIN", target])
                copied.append(name)
                pending.append(target)
        rel = os.path.relpath(libdir, elf.parent)
        wanted = "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"
        current = run(["patchelf", "--print-rpath", elf]).strip()
        if wanted not in current.split(":"):
            run(["patchelf", "--set-rpath", ":".join(filter(None, [current, wanted])), elf])
        pending.append(elf)  # check again: now resolved inside the runtime
    return sorted(copied)


def _needed(elf: Path) -> list[tuple[str, Path | None]]:
    out = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, env=ENV).stdout
    needed: list[tuple[str, Path | None]] = []
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)\s+=>\s+(not found|\S+)", line)
        if not m or GLIBC.match(m.group(1)):
            continue
        needed.append((m.group(1), None if m.group(2) == "not found" else Path(m.group(2))))
    return needed


def _inside(path: Path | None, root: Path) -> bool:
    return path is not None and path.resolve().is_relative_to(root.resolve())


def _staged(python: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with the staged interpreter, isolated from the build host's Python."""
    env = {k: v for k, v in ENV.items() if k not in ("LD_LIBRARY_PATH", "PYTHONHOME")}
    return subprocess.run(
        [str(python), "-I", "-B", "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


_IMPORTED = """
import json, sys
sys.path.append(sys.argv[1])
for name in sys.argv[2:]:
    __import__(name)
print(json.dumps([getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]))
"""


def idle_tops(python: Path, version: str, imports: tuple[str, ...], source: Path) -> set[str]:
    """The top-level modules and packages of the standard library and the dependencies that
    ``imports`` (Corral's modules, from ``source``) bring in, where that is at least half of
    the package's compiled bytes: kept out of the zip by ``zip_libraries``.  A package is
    kept or zipped whole (its ``__path__`` is one place); most of ``encodings``, say, is
    codecs nothing loads, so it stays zipped."""
    stdlib = python.parent.parent / "lib" / f"python{version}"
    site = stdlib / "site-packages"
    done = _staged(python, _IMPORTED, str(source), *imports)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["?"]
        raise BuildError(f"the staged runtime cannot import the agent: {tail[0]}")
    hot: dict[str, int] = {}
    for name in json.loads(done.stdout):
        top = _top(Path(name), stdlib, site)
        if top and name.endswith(".pyc"):
            hot[top] = hot.get(top, 0) + Path(name).stat().st_size
    keep = set()
    for top, size in hot.items():
        base = site / top if (site / top).exists() else stdlib / top
        total = sum(p.stat().st_size for p in base.rglob("*.pyc")) if base.is_dir() else size
        if 2 * size >= total:
            keep.add(top)
    return keep


def _top(path: Path, stdlib: Path, site: Path) -> str | None:
    """The name of the top-level module or package (``email``, ``queue.pyc``) ``path`` is in,
    relative to site-packages or the standard library; None for extensions and the rest."""
    for base in (site, stdlib):
        if path.is_relative_to(base):
            first = path.relative_to(base).parts[0]
            return None if first in ("lib-dynload", "site-packages") else first
    return None


def zip_libraries(
    runtime: Path, version: str, own: tuple[str, ...], keep: set[str] | None = None
) -> None:
    """Move the standard library's .pyc into ``lib/pythonXY.zip`` (deflated), which CPython
    puts first on sys.path by itself, as the official embeddable distribution does: a third
    of their size on disk.  So do the dependencies that are nothing but .pyc (no extension,
    no data file).  Data files, extensions (lib-dynload) and Corral's own packages stay
    files; os.pyc stays as well (it is how the interpreter finds its prefix), and so do the
    top-level modules and packages named in ``keep`` (``idle_tops``)."""
    stdlib = runtime / "lib" / f"python{version}"
    site = stdlib / "site-packages"
    archive = runtime / "lib" / f"python{version.replace('.', '')}.zip"
    moved: list[Path] = []
    kept = keep or set()
    pure = [p for p in site.iterdir() if p.name not in {*own, *kept} and _pure_python(p)]
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for pyc in sorted(stdlib.rglob("*.pyc")):
            if "__pycache__" in pyc.parts or pyc.is_relative_to(stdlib / "lib-dynload"):
                continue
            if _top(pyc, stdlib, site) in kept:
                continue
            if pyc.is_relative_to(site):
                if not any(pyc == p or pyc.is_relative_to(p) for p in pure):
                    continue
                zf.write(pyc, pyc.relative_to(site).as_posix())
            else:
                zf.write(pyc, pyc.relative_to(stdlib).as_posix())
            moved.append(pyc)
    for pyc in moved:
        if pyc != stdlib / "os.pyc":
            pyc.unlink()
    for package in pure:
        for marker in package.rglob("py.typed") if package.is_dir() else ():
            marker.unlink()
    for folder in sorted(stdlib.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _pure_python(path: Path) -> bool:
    if path.is_file():
        return path.suffix == ".pyc"
    if path.name.endswith(".dist-info") or not (path / "__init__.pyc").exists():
        return False
    return all(f.suffix == ".pyc" or f.name == "py.typed" for f in path.rglob("*") if f.is_file())


def strip_all(root: Path) -> None:
    """Strip the extensions pip installed (their wheels keep symbols the runtime never uses)."""
    for elf in elf_files(root):
        run(["strip", "--strip-unneeded", elf])


def min_glibc(runtime: Path) -> str:
    """The newest GLIBC_x.y symbol version any binary of the runtime asks for."""
    best = (2, 0)
    for elf in elf_files(runtime):
        out = subprocess.run(
            ["objdump", "-T", str(elf)], capture_output=True, text=True, env=ENV
        ).stdout
        for major, minor in re.findall(r"GLIBC_(\d+)\.(\d+)", out):
            best = max(best, (int(major), int(minor)))
    return f"{best[0]}.{best[1]}"


def check_extensions(python: Path) -> None:
    """Import every extension module of lib-dynload with the staged interpreter."""
    code = (
        "import importlib, pathlib, sys\n"
        "d = pathlib.Path(sys.prefix, 'lib', 'python%d.%d' % sys.version_info[:2], 'lib-dynload')\n"
        "bad = []\n"
        "for f in sorted(d.glob('*.so')):\n"
        "    try: importlib.import_module(f.name.split('.')[0])\n"
        "    except Exception as e: bad.append(f'{f.name}: {e}')\n"
        "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n"
    )
    done = _staged(python, code)
    if done.returncode != 0:
        raise BuildError(f"the staged runtime cannot load: {done.stdout}{done.stderr}".strip())


_IMPORT_ALL = """
import importlib, pkgutil, sys
other_os = {"msvcrt", "winreg", "_winapi", "_overlapped", "win32api", "win32con", "pywintypes"}
package = importlib.import_module(sys.argv[1])
bad = []
for found in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    if found.name.endswith(".__main__"):
        continue
    try:
        importlib.import_module(found.name)
    except ModuleNotFoundError as exc:
        if exc.name not in other_os:
            bad.append(f"{found.name}: {exc}")
    except Exception as exc:
        bad.append(f"{found.name}: {exc}")
print("; ".join(bad))
sys.exit(1 if bad else 0)
"""


def check_package(python: Path, package: str) -> None:
    """The staged runtime imports every module of ``package`` (those of another OS aside):
    nothing a module needs was trimmed out or left behind."""
    done = _staged(python, _IMPORT_ALL, package)
    if done.returncode != 0:
        reason = (done.stdout.strip() or done.stderr.strip()).splitlines()[-1:] or ["?"]
        raise BuildError(f"the staged runtime cannot import {package}: {reason[0]}")


def check_import(python: Path, module: str) -> None:
    """The staged runtime imports ``module`` by itself (nothing from the build host)."""
    done = _staged(python, f"import {module}")
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["?"]
        raise BuildError(f"the staged runtime cannot import {module}: {tail[0]}")
