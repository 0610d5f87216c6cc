"""LEAD'S PLACEHOLDER (helper A replaces this file): version sort keys."""

from __future__ import annotations

import re
from typing import Final

MANAGERS: Final = ("dpkg", "rpm", "apk", "pacman", "brew", "MSI")


def _num(digits: str) -> bytes:
    digits = digits.lstrip("0") or "0"
    return bytes([0x20 + len(digits)]) + digits.encode()


def _dpkg_part(text: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(text):
        j = i
        while j < len(text) and not text[j].isdigit():
            j += 1
        for ch in text[i:j]:
            if ch == "~":
                out.append(0x01)
            elif ch.isalpha():
                out.append(0x03)
                out.append(ord(ch) & 0xFF)
            else:
                out.append(0x04)
                out.append(ord(ch) & 0xFF)
        out.append(0x02)
        k = j
        while k < len(text) and text[k].isdigit():
            k += 1
        out += _num(text[j:k])
        i = k
    out.append(0x02)
    return bytes(out)


def _dpkg(version: str) -> bytes:
    epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return (
        _num(epoch if epoch.isdigit() else "0")
        + _dpkg_part(upstream)
        + b"\x00"
        + _dpkg_part(revision)
    )


_SEG = re.compile(r"~|\^|[0-9]+|[A-Za-z]+")


def _rpm_part(text: str) -> bytes:
    out = bytearray()
    for seg in _SEG.findall(text):
        if seg == "~":
            out.append(0x01)
        elif seg == "^":
            out.append(0x04)
        elif seg.isdigit():
            out.append(0x20)
            out += _num(seg)
        else:
            out.append(0x10)
            out += seg.encode() + b"\x00"
    out.append(0x03)
    return bytes(out)


def _rpm(version: str) -> bytes:
    epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
    ver, _, rel = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return _num(epoch if epoch.isdigit() else "0") + _rpm_part(ver) + b"\x00" + _rpm_part(rel)


def sort_key(manager: str, version: str) -> bytes:
    if manager == "dpkg":
        return _dpkg(version)
    return _rpm(version)
