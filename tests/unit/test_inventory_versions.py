"""Version sort keys against the package managers' own comparisons: dpkg's
``--compare-versions``, rpm's ``rpm.vercmp`` (rpm --eval lua) and libalpm's
``alpm_pkg_vercmp`` (what pacman's ``vercmp`` prints; the tool itself is not packaged
here, the library pacman uses is).  apk-tools cannot be installed here: its rules are
checked against cases worked out from apk-tools 3's version.c."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.services.inventory.versions import MANAGERS, compare, sort_key

Pairs = list[tuple[str, str]]


def _text(alphabet: str, min_size: int = 0, max_size: int = 6) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=min_size, max_size=max_size)


# dpkg: [epoch:]upstream[-revision], upstream starting with a digit (dpkg's syntax).
_dpkg_versions = st.builds(
    lambda epoch, first, rest, revision: f"{epoch}{first}{rest}{revision}",
    st.sampled_from(["", "", "0:", "1:", "2:", "01:", "10:"]),
    st.sampled_from("0123456789"),
    _text("0129.+~abzAZ"),
    st.one_of(st.just(""), _text("0129.+~abz", 1, 4).map(lambda r: "-" + r)),
)


def _pairs(versions: st.SearchStrategy[str]) -> st.SearchStrategy[Pairs]:
    pair = st.one_of(
        st.tuples(versions, versions),
        # near neighbours: one version and a small change of it
        st.tuples(versions, _text("0~.a^1+", 1, 2)).map(lambda t: (t[0], t[0] + t[1])),
    )
    return st.lists(pair, min_size=5, max_size=30)


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


def _check(manager: str, pairs: Pairs, real: Callable[[Pairs], list[int]]) -> None:
    expected = real(pairs)
    for (a, b), want in zip(pairs, expected, strict=True):
        got = compare(manager, a, b)
        assert got == want, f"{manager}: {a!r} vs {b!r}: key says {got}, the tool {want}"
        assert (sort_key(manager, a) == sort_key(manager, b)) == (want == 0)


def _dpkg(pairs: Pairs) -> list[int]:
    script = (
        'while [ $# -gt 0 ]; do if dpkg --compare-versions "$1" lt "$2"; then echo -1; '
        'elif dpkg --compare-versions "$1" eq "$2"; then echo 0; else echo 1; fi; '
        "shift 2; done"
    )
    args = [v for pair in pairs for v in pair]
    done = subprocess.run(
        ["sh", "-c", script, "sh", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return [int(line) for line in done.stdout.split()]


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is not installed")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pairs(_dpkg_versions))
def test_dpkg_keys_order_as_dpkg_compare_versions(pairs: Pairs) -> None:
    _check("dpkg", pairs, _dpkg)


def test_dpkg_known_orders() -> None:
    # dpkg: the empty version is the lowest; a missing revision equals -0; ~ before the end
    ordered = ["", "0~", "0", "1.0~rc1", "1.0", "1.0-0.1", "1.0a", "1.0+b1", "1.0.1", "1:0.1"]
    keys = [sort_key("dpkg", v) for v in ordered]
    assert keys == sorted(keys)
    assert sort_key("dpkg", "1.0") == sort_key("dpkg", "1.0-0") == sort_key("dpkg", "0:1.00")


# rpm: [epoch:]version[-release]; rpm.vercmp compares the parsed EVRs.
_rpm_chars = "0129abzAZ.._+~^"
_rpm_versions = st.builds(
    lambda epoch, version, release: f"{epoch}{version}{release}",
    st.sampled_from(["", "", "0:", "1:", "3:"]),
    _text(_rpm_chars, 1, 7),
    st.one_of(st.just(""), _text(_rpm_chars, 1, 4).map(lambda r: "-" + r)),
)


def _rpm(pairs: Pairs) -> list[int]:
    table = ",".join(f'{{"{a}","{b}"}}' for a, b in pairs)
    lua = f'%{{lua: for _, p in ipairs({{{table}}}) do print(rpm.vercmp(p[1], p[2]) .. ",") end}}'
    done = subprocess.run(
        ["rpm", "--eval", lua], capture_output=True, text=True, timeout=60, check=True
    )
    return [_sign(int(v)) for v in done.stdout.replace("\n", "").split(",") if v.strip()]


def _both_or_no_release(pair: tuple[str, str]) -> bool:
    # rpm and pacman compare releases only when both versions have one (not an order)
    return ("-" in pair[0]) == ("-" in pair[1])


@pytest.mark.skipif(shutil.which("rpm") is None, reason="rpm is not installed")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pairs(_rpm_versions).map(lambda ps: [p for p in ps if _both_or_no_release(p)]))
def test_rpm_keys_order_as_rpm_vercmp(pairs: Pairs) -> None:
    if pairs:
        _check("rpm", pairs, _rpm)


def _alpm() -> Callable[[Pairs], list[int]] | None:
    name = ctypes.util.find_library("alpm")
    if name is None:
        return None
    vercmp = ctypes.CDLL(name).alpm_pkg_vercmp
    vercmp.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    vercmp.restype = ctypes.c_int
    return lambda pairs: [_sign(vercmp(a.encode(), b.encode())) for a, b in pairs]


_ALPM = _alpm()
# pacman: epoch:pkgver-pkgrel; a version ending in a separator is left out (vercmp is not
# an order there, see versions.py).
_pacman_versions = st.builds(
    lambda epoch, version, release: f"{epoch}{version}{release}",
    st.sampled_from(["", "", "1:", "2:"]),
    _text("0129abzAZ.._+", 1, 7).filter(lambda v: v[-1].isalnum()),
    st.one_of(
        st.just(""), _text("0129ab.", 1, 3).filter(lambda r: r[-1].isalnum()).map(lambda r: "-" + r)
    ),
)


_pacman_pair = st.one_of(
    st.tuples(_pacman_versions, _pacman_versions),
    # near neighbours: a version and the same with a segment more (still ending alphanumeric)
    st.tuples(
        _pacman_versions, st.sampled_from(["1", "a", "0", ".1", ".a", "_1", "..2", "+b"])
    ).map(lambda t: (t[0], t[0] + t[1])),
)


@pytest.mark.skipif(_ALPM is None, reason="libalpm (pacman) is not installed")
@settings(max_examples=200, deadline=None)
@given(st.lists(_pacman_pair, min_size=1, max_size=30))
def test_pacman_keys_order_as_alpm_vercmp(pairs: Pairs) -> None:
    assert _ALPM is not None
    pairs = [p for p in pairs if _both_or_no_release(p)]
    if pairs:
        _check("pacman", pairs, _ALPM)


@pytest.mark.skipif(shutil.which("rpm") is None, reason="rpm is not installed")
def test_rpm_known_orders_from_the_tool() -> None:
    pairs = [
        ("1.0~rc1", "1.0"),
        ("1.0^post", "1.0"),
        ("1.0^post", "1.0.1"),
        ("1.0a", "1.0"),
        ("1.0", "1_0"),
        ("1:1.0", "2.0"),
        ("2.0-1", "2.0-1.el9"),
        ("010", "10"),
    ]
    _check("rpm", pairs, _rpm)


@pytest.mark.parametrize(
    ("a", "op", "b"),
    [
        ("1.0", "<", "1.0.1"),
        ("1.0_alpha", "<", "1.0_beta"),
        ("1.0_beta", "<", "1.0_pre"),
        ("1.0_pre", "<", "1.0_rc"),
        ("1.0_rc1", "<", "1.0"),
        ("1.0", "<", "1.0_cvs"),
        ("1.0_cvs", "<", "1.0_svn"),
        ("1.0_git", "<", "1.0_hg"),
        ("1.0_hg", "<", "1.0_p1"),
        ("1.0_p1", "<", "1.0_p2"),
        ("1.0", "<", "1.0-r1"),
        ("1.0-r1", "<", "1.0-r10"),
        ("1.0", "<", "1.0a"),
        ("1.0a", "<", "1.0b"),
        ("1.0b", "<", "1.0.1"),
        ("1.2", "<", "1.10"),
        ("1.2.0", "<", "1.2.001"),  # a leading zero: compared as strings
        ("1.05", "<", "1.2"),
        ("01.2", "=", "1.2"),  # the first part is always a number
        ("1.0~abc", "<", "1.0~abd"),
        ("1.0~abc-r1", ">", "1.0~abc"),
        ("1.0_alpha_pre2", "<", "1.0_alpha"),
        ("1.0", "<", "1.0bc"),  # invalid after "b": the rest is ignored
        ("1.0bc", "=", "1.0bd"),
        ("abc", "=", "xyz"),  # not versions: equal, and before every version
        ("abc", "<", "0"),
    ],
)
def test_apk_orders_as_apk_tools(a: str, op: str, b: str) -> None:
    assert compare("apk", a, b) == {"<": -1, "=": 0, ">": 1}[op]


@given(st.sampled_from([*MANAGERS, "", "winget"]), st.text(max_size=40), st.text(max_size=40))
@settings(max_examples=300, deadline=None)
def test_any_text_has_a_key_and_compare_is_antisymmetric(manager: str, a: str, b: str) -> None:
    assert isinstance(sort_key(manager, a), bytes)
    assert compare(manager, a, b) == -compare(manager, b, a)
    assert compare(manager, a, a) == 0


def test_unknown_managers_use_rpm_rules() -> None:
    for manager in ("brew", "MSI", "", "chocolatey"):
        assert sort_key(manager, "10.0.19041.1") == sort_key("rpm", "10.0.19041.1")
    assert compare("MSI", "10.0.9", "10.0.10") == -1
