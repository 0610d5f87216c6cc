"""Version sort keys: ``sort_key(manager, version)`` is bytes whose bytewise order is that
package manager's own version order, so the store can index and range-compare versions.

- ``dpkg``: Debian's rules (``dpkg --compare-versions``): ``[epoch:]upstream[-revision]``;
  ``~`` before everything (even the end), letters before other characters, digit runs
  numeric; a missing revision equals ``0``; the empty version is the lowest.
- ``rpm`` (and ``brew``, ``MSI`` and any other manager): rpm 4.18's ``rpmvercmp`` on
  ``[epoch:]version[-release]``: separators ignored, alpha segments before numeric ones,
  ``~`` before everything, ``^`` after the end but before anything else.
- ``pacman``: libalpm's ``alpm_pkg_vercmp`` (rpm 4.8's older rpmvercmp: no ``~``/``^``;
  a longer separator sorts higher; an alpha tail sorts before the end).
- ``apk``: apk-tools 3's rules (``digits{.digits}[letter]{_suffix[n]}[~hash][-rN]``;
  ``_alpha`` < ``_beta`` < ``_pre`` < ``_rc`` < no suffix < ``_cvs`` < ``_svn`` <
  ``_git`` < ``_hg`` < ``_p``; a version part with a leading zero compares as a string;
  everything after an invalid part is ignored).

Where the managers' own comparisons are not a total order a key cannot follow them, and
keys order these (rare) cases in one fixed way: rpm and pacman treat a missing release as
"any release" (``1.0`` equals both ``1.0-1`` and ``1.0-2``); here it sorts before every
release.  pacman compares a version ending in separators inconsistently (``1a.`` <
``1a1`` < ``1a.b`` < ``1a.``); here a trailing separator sorts after an alpha segment
behind a one-character separator and before a numeric one.  Separators longer than 59
characters count as 59 (pacman).  apk-tools 2's leading-zero rules differ from 3's.

This module is pure (no HTTP stack): the agent-independent store code imports it.
"""

from __future__ import annotations

import re
from typing import Final

MANAGERS: Final = ("dpkg", "rpm", "apk", "pacman", "brew", "MSI")


def sort_key(manager: str, version: str) -> bytes:
    """The key of ``version`` under ``manager``'s rules (rpm's for an unknown manager)."""
    if manager == "dpkg":
        return _dpkg(version)
    if manager == "pacman":
        return _evr(version, pacman=True)
    if manager == "apk":
        return _apk(version)
    return _evr(version, pacman=False)


def compare(manager: str, a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` sorts before, with or after ``b`` under ``manager``'s rules."""
    ka, kb = sort_key(manager, a), sort_key(manager, b)
    return (ka > kb) - (ka < kb)


def _num(digits: bytes) -> bytes:
    """A digit run by value: its length (leading zeros dropped), then its digits."""
    digits = digits.lstrip(b"0")
    return len(digits).to_bytes(2, "big") + digits


def _isdigit(c: int) -> bool:
    return 0x30 <= c <= 0x39


def _isalpha(c: int) -> bool:
    return 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


# --- dpkg ------------------------------------------------------------------------------

_D_TILDE, _D_END, _D_RUN_END, _D_LETTER, _D_OTHER = b"\x01", b"\x02", b"\x03", b"\x04", b"\x05"


def _dpkg(version: str) -> bytes:
    version = version.strip()
    if not version:
        return b"\x00"  # dpkg: the empty version is earlier than any other
    epoch, rest = "0", version
    head, colon, tail = version.partition(":")
    if colon and head.isascii() and head.isdigit():
        epoch, rest = head, tail
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    return b"\x01" + _num(epoch.encode()) + _dpkg_part(upstream) + _dpkg_part(revision)


def _dpkg_part(text: str) -> bytes:
    """dpkg's verrevcmp as a key: (non-digit run, digit run) pairs, then the end.  The
    empty part equals "0"; the end sorts after "~" and before any other character."""
    raw = text.encode() or b"0"
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        while i < n and not _isdigit(raw[i]):
            c = raw[i]
            if c == 0x7E:
                out += _D_TILDE
            elif _isalpha(c):
                out += _D_LETTER + bytes([c])
            else:
                out += _D_OTHER + bytes([c])
            i += 1
        out += _D_RUN_END
        j = i
        while j < n and _isdigit(raw[j]):
            j += 1
        out += _num(raw[i:j])
        i = j
    out += _D_END
    return bytes(out)


# --- rpm / pacman: [epoch:]version[-release] ---------------------------------------------


def _evr(version: str, *, pacman: bool) -> bytes:
    raw = version.encode()
    i = 0
    while i < len(raw) and _isdigit(raw[i]):
        i += 1
    epoch = b"0"
    rest = raw
    if i < len(raw) and raw[i] == 0x3A:  # ":"
        epoch = raw[:i] or b"0"
        rest = raw[i + 1 :]
        search_from = 0
    else:
        search_from = i
    dash = rest.rfind(b"-", search_from)
    release: bytes | None = None
    if dash >= 0:
        rest, release = rest[:dash], rest[dash + 1 :]
    encode = _alpm if pacman else _rpm
    key = _num(epoch) + encode(rest)
    if release is None:
        return key + b"\x00"
    return key + b"\x01" + encode(release)


_R_TILDE, _R_END, _R_CARET, _R_ALPHA, _R_NUM = b"\x01", b"\x02", b"\x03", b"\x04", b"\x05"


def _rpm(raw: bytes) -> bytes:
    """rpm 4.18's rpmvercmp as a key."""
    out = bytearray()
    i, n = 0, len(raw)
    while True:
        while i < n and not (_isdigit(raw[i]) or _isalpha(raw[i])) and raw[i] not in (0x7E, 0x5E):
            i += 1
        if i >= n:
            out += _R_END
            return bytes(out)
        c = raw[i]
        if c == 0x7E:
            out += _R_TILDE
            i += 1
        elif c == 0x5E:
            out += _R_CARET
            i += 1
        elif _isdigit(c):
            j = i
            while j < n and _isdigit(raw[j]):
                j += 1
            out += _R_NUM + _num(raw[i:j])
            i = j
        else:
            j = i
            while j < n and _isalpha(raw[j]):
                j += 1
            out += _R_ALPHA + raw[i:j] + b"\x00"
            i = j


_MAX_SEP: Final = 59


def _alpm(raw: bytes) -> bytes:
    """libalpm's rpmvercmp as a key: per segment its separator's length, its type (alpha
    before numeric) and value; the end sits between alpha and numeric segments of the
    same separator length (a trailing separator counts as length 1)."""
    out = bytearray()
    i, n = 0, len(raw)
    while True:
        start = i
        while i < n and not (_isdigit(raw[i]) or _isalpha(raw[i])):
            i += 1
        sep = min(i - start, _MAX_SEP)
        if i >= n:
            out.append(0x10 + 4 * min(sep, 1) + 1)
            return bytes(out)
        if _isdigit(raw[i]):
            j = i
            while j < n and _isdigit(raw[j]):
                j += 1
            out.append(0x10 + 4 * sep + 2)
            out += _num(raw[i:j])
        else:
            j = i
            while j < n and _isalpha(raw[j]):
                j += 1
            out.append(0x10 + 4 * sep)
            out += raw[i:j] + b"\x00"
        i = j


# --- apk -------------------------------------------------------------------------------

_PRE: Final = {"alpha": 0x01, "beta": 0x02, "pre": 0x03, "rc": 0x04}
_POST: Final = {"cvs": 0x0A, "svn": 0x0B, "git": 0x0C, "hg": 0x0D, "p": 0x0E}
_A_INVALID, _A_END, _A_REV, _A_HASH, _A_SUFNO = 0x05, 0x06, 0x07, 0x08, 0x09
_A_LETTER, _A_DIGIT = 0x0F, 0x10
# apk-tools' token kinds, in its order: what may follow what.
_INITIAL, _DIGIT, _LETTER, _SUFFIX, _SUFFIX_NO, _HASH, _REVISION = range(7)
_DIGITS = re.compile(rb"[0-9]*")
_LOWER = re.compile(rb"[a-z]*")
_HEX = re.compile(rb"[0-9a-f]*")


def _apk(version: str) -> bytes:
    """apk-tools 3's version comparison as a key: one byte per token kind, ordered as apk
    orders differing kinds (pre-release suffixes lowest, then invalid, end, revision,
    hash, suffix number, other suffixes, letter, digits), then the token's value."""
    raw = version.encode()
    out = bytearray()
    m = _DIGITS.match(raw)
    assert m is not None
    if not m.group():
        return bytes([_A_INVALID])
    out += bytes([_A_DIGIT]) + _num(m.group())
    i, prev = m.end(), _INITIAL
    n = len(raw)
    while i < n:
        c = raw[i]
        if 0x61 <= c <= 0x7A:  # a letter
            if prev > _DIGIT:
                break
            out += bytes([_A_LETTER, c])
            i, prev = i + 1, _LETTER
        elif c == 0x2E or _isdigit(c):
            if c == 0x2E:
                if prev > _DIGIT:
                    break
                i += 1
            if prev in (_INITIAL, _DIGIT):
                kind = _DIGIT
            elif prev == _SUFFIX:
                kind = _SUFFIX_NO
            else:
                break
            m = _DIGITS.match(raw, i)
            assert m is not None
            digits = m.group()
            if not digits:
                break
            if kind == _DIGIT:
                if digits[0] == 0x30:  # a leading zero: compared as a string
                    out += bytes([_A_DIGIT, 0x00]) + digits + b"\x00"
                else:
                    out += bytes([_A_DIGIT, 0x01]) + _num(digits)
            else:
                out += bytes([_A_SUFNO]) + _num(digits)
            i, prev = m.end(), kind
        elif c == 0x5F:  # "_"
            if prev > _SUFFIX_NO:
                break
            m = _LOWER.match(raw, i + 1)
            assert m is not None
            name = m.group().decode()
            code = _PRE.get(name) or _POST.get(name)
            if code is None:
                break
            out.append(code)
            i, prev = m.end(), _SUFFIX
        elif c == 0x7E:  # "~"
            if prev >= _HASH:
                break
            m = _HEX.match(raw, i + 1)
            assert m is not None
            if not m.group():
                break
            out += bytes([_A_HASH]) + m.group() + b"\x00"
            i, prev = m.end(), _HASH
        elif c == 0x2D:  # "-"
            if prev >= _REVISION or raw[i + 1 : i + 2] != b"r":
                break
            m = _DIGITS.match(raw, i + 2)
            assert m is not None
            if not m.group():
                break
            out += bytes([_A_REV]) + _num(m.group())
            i, prev = m.end(), _REVISION
        else:
            break
    else:
        out.append(_A_END)
        return bytes(out)
    out.append(_A_INVALID)
    return bytes(out)
