"""Checking the audit chain, from the database or from an export file (offline).

Export format: JSON Lines, one object per line, each with a ``type``::

    {"type": "header", "format": "corral-audit", "version": 1, "exported_at": T,
     "since": T | null, "until": T | null}
    {"type": "checkpoint", "kind", "seq_upto", "hash_upto", "time", "prev_checkpoint_hash",
     "checkpoint_hash", "key_id", "public_key", "signature"}
    {"type": "entry", "seq", "id", "time", "identity_type", "identity_id", "identity_name",
     "source_ip", "action", "resource", "request", "outcome", "error", "request_id",
     "prev_hash", "hash"}
    {"type": "end", "entries": N, "checkpoints": M}

Times are seconds since the epoch.  Entries come in ``seq`` order; a checkpoint comes right
after the entry at its ``seq_upto``.  An export is self-contained: unless it starts at entry 1,
it starts with the signed checkpoint at the entry before its first (for ``since``, the nearest
checkpoint before it; for a full export, the retention checkpoint left by pruning), so every
entry is tied to a signature.  Hence an export may begin a little before ``since``.
``since: null`` marks a full export: its start must be entry 1 or a retention checkpoint.
Check one with :func:`verify_export` and the public key file ``audit.pub``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from control_plane.security.audit_chain import (
    CHECKPOINT_FIELDS,
    ENTRY_FIELDS,
    GENESIS_HASH,
    PERIODIC,
    RETENTION,
    checkpoint_problem,
    entry_hash,
)

FORMAT = "corral-audit"
VERSION = 1
_ENTRY_KEYS = frozenset((*ENTRY_FIELDS, "hash", "type"))
_CHECKPOINT_KEYS = frozenset((*CHECKPOINT_FIELDS, "type"))


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None
    reason: str
    checkpoints: int = 0


class _Broken(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


def _missing(lo: int, hi: int) -> str:
    what = f"entry {lo}" if lo == hi else f"entries {lo}..{hi}"
    return f"{what} missing (deleted?)"


def _stamp(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name(cp: Mapping[str, Any]) -> str:
    return f"{cp['kind']} checkpoint at entry {cp['seq_upto']} (signed {_stamp(cp['time'])})"


class ChainVerifier:
    """Feed checkpoints and entries in ``seq`` order (a checkpoint before, or right after, the
    entry at its ``seq_upto``); :meth:`finish` names the first problem.

    ``full``: the chain must start at entry 1 or at a retention checkpoint; otherwise (a range)
    any signed checkpoint may be the start.
    """

    def __init__(self, public_key: bytes | None, *, full: bool = True) -> None:
        self._key = public_key
        self._full = full
        self._pending: deque[Mapping[str, Any]] = deque()
        self._started = False
        self._genesis_start = False
        self._next_seq = 0
        self._prev_hash = ""
        self._vouched_upto = 0
        self._last_periodic: str | None = None
        self._broken: _Broken | None = None
        self.first_seq: int | None = None
        self.checked = 0
        self.checkpoints = 0

    @property
    def failed(self) -> bool:
        return self._broken is not None

    def add_checkpoint(self, cp: Mapping[str, Any]) -> None:
        if self._broken:
            return
        try:
            k = cp["seq_upto"]
            if self._pending and k < self._pending[-1]["seq_upto"]:
                raise _Broken(k, f"{_name(cp)} is out of order (reordered?)")
            if self._started and k < self._next_seq:
                if k != self._next_seq - 1 or self._pending:
                    raise _Broken(k, f"{_name(cp)} is out of place (reordered?)")
                self._settle(cp)
            else:
                self._pending.append(cp)
        except _Broken as exc:
            self._broken = exc

    def add_entry(self, entry: Mapping[str, Any]) -> None:
        if self._broken:
            return
        try:
            self._entry(entry)
        except _Broken as exc:
            self._broken = exc

    def finish(self, head: tuple[int, str] | None = None) -> VerifyResult:
        """The verdict; ``head`` (seq, hash of the chain's last entry, as the database records
        it) also catches entries deleted from the end."""
        if not self._broken:
            try:
                self._finish(head)
            except _Broken as exc:
                self._broken = exc
        if self._broken:
            return VerifyResult(
                False, self.checked, self._broken.seq, self._broken.reason, self.checkpoints
            )
        return VerifyResult(True, self.checked, None, self._summary(), self.checkpoints)

    def _summary(self) -> str:
        if self.checked:
            last = self._next_seq - 1
            text = f"{self.checked} entries ({self.first_seq}..{last})"
        else:
            text = "0 entries"
        text += f" and {self.checkpoints} checkpoints verified"
        if self._key is None and self.checkpoints:
            text += "; signatures checked with the keys the checkpoints carry, not a trusted key"
        return text

    def _entry(self, e: Mapping[str, Any]) -> None:
        s = e["seq"]
        if not self._started:
            self._start(s)
        elif s < self._next_seq:
            raise _Broken(s, f"entry {s} appears after entry {self._next_seq - 1} (reordered?)")
        elif s > self._next_seq:
            raise _Broken(s, _missing(self._next_seq, s - 1))
        if e["prev_hash"] != self._prev_hash:
            if s == self.first_seq and self._genesis_start:
                raise _Broken(s, f"entry {s}: prev_hash is not the genesis hash (edited?)")
            if s == self.first_seq:
                raise _Broken(s, f"entry {s}: prev_hash does not link to the signed checkpoint")
            raise _Broken(
                s, f"entry {s}: prev_hash does not link to entry {s - 1} (reordered or deleted?)"
            )
        if entry_hash(e) != e["hash"]:
            raise _Broken(s, f"entry {s}: hash does not match its content (edited?)")
        self._prev_hash = e["hash"]
        self._next_seq = s + 1
        self.checked += 1
        while self._pending and self._pending[0]["seq_upto"] <= s:
            self._settle(self._pending.popleft())

    def _start(self, s: int) -> None:
        self._started = True
        self.first_seq = s
        self._genesis_start = s == 1
        self._next_seq = s
        self._prev_hash = GENESIS_HASH
        anchor: Mapping[str, Any] | None = None
        retention_upto = 0
        while self._pending and self._pending[0]["seq_upto"] <= s - 1:
            cp = self._pending.popleft()
            self._check(cp)
            if cp["kind"] == RETENTION:
                retention_upto = max(retention_upto, cp["seq_upto"])
            if cp["seq_upto"] == s - 1 and (not self._full or cp["kind"] == RETENTION):
                anchor = cp
        if s == 1:
            return
        if anchor is None:
            if self._full:
                raise _Broken(s, _missing(retention_upto + 1, s - 1))
            raise _Broken(
                s, f"entry {s}: no signed checkpoint at entry {s - 1} to verify from (deleted?)"
            )
        self._prev_hash = anchor["hash_upto"]
        self._vouched_upto = s - 1

    def _check(self, cp: Mapping[str, Any]) -> None:
        """Signature, key and the periodic checkpoints' own chain."""
        problem = checkpoint_problem(cp, self._key)
        if problem:
            raise _Broken(cp["seq_upto"], f"{_name(cp)}: {problem}")
        if cp["kind"] == PERIODIC:
            if self._last_periodic is None:
                linked = not (self._full and self._genesis_start) or (
                    cp["prev_checkpoint_hash"] == GENESIS_HASH
                )
            else:
                linked = cp["prev_checkpoint_hash"] == self._last_periodic
            if not linked:
                raise _Broken(
                    cp["seq_upto"],
                    f"{_name(cp)}: does not link to the periodic checkpoint before it "
                    "(checkpoint deleted?)",
                )
            self._last_periodic = cp["checkpoint_hash"]
        self.checkpoints += 1

    def _settle(self, cp: Mapping[str, Any]) -> None:
        """A checkpoint at the entry just verified: its signed hash must be that entry's."""
        self._check(cp)
        k = cp["seq_upto"]
        if cp["hash_upto"] != self._prev_hash:
            lo = self._vouched_upto + 1
            if lo == k:
                raise _Broken(k, f"entry {k}: hash differs from the {_name(cp)} (rewritten?)")
            raise _Broken(lo, f"entries {lo}..{k} do not match the {_name(cp)} (rewritten?)")
        self._vouched_upto = k

    def _finish(self, head: tuple[int, str] | None) -> None:
        if not self._started:
            # No entries: the chain starts (and ends) at the latest retention checkpoint.
            retained = [c["seq_upto"] for c in self._pending if c["kind"] == RETENTION]
            last = max(retained, default=0)
            self._genesis_start = not retained
            while self._pending:
                cp = self._pending.popleft()
                self._check(cp)
                if self._full and cp["seq_upto"] > last:
                    raise _Broken(last + 1, _missing(last + 1, cp["seq_upto"]))
        else:
            last = self._next_seq - 1
            if self._pending:
                k = self._pending[-1]["seq_upto"]
                raise _Broken(last + 1, _missing(last + 1, k))
        if head is None or not self._full:
            return
        head_seq, head_hash = head
        if head_seq > last:
            raise _Broken(last + 1, _missing(last + 1, head_seq))
        if head_seq < last:
            raise _Broken(head_seq + 1, f"the chain's head is entry {head_seq}, not {last}")
        if self._started and head_hash != self._prev_hash:
            raise _Broken(last, f"entry {last}: hash differs from the chain's head (rewritten?)")


def verify(
    entries: Iterable[Mapping[str, Any]],
    checkpoints: Iterable[Mapping[str, Any]],
    public_key: bytes | None,
    *,
    full: bool = True,
    head: tuple[int, str] | None = None,
) -> VerifyResult:
    """Check entries (in the order given) against each other and the checkpoints."""
    verifier = ChainVerifier(public_key, full=full)
    for cp in sorted(checkpoints, key=lambda c: int(c["seq_upto"])):
        verifier.add_checkpoint(cp)
    for entry in entries:
        verifier.add_entry(entry)
        if verifier.failed:
            break
    return verifier.finish(head)


# Export lines -------------------------------------------------------------------------------


def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


def header_line(exported_at: float, since: float | None, until: float | None) -> str:
    return _dumps(
        {
            "type": "header",
            "format": FORMAT,
            "version": VERSION,
            "exported_at": exported_at,
            "since": since,
            "until": until,
        }
    )


def entry_line(entry: Mapping[str, Any]) -> str:
    return _dumps({"type": "entry", **{f: entry[f] for f in (*ENTRY_FIELDS, "hash")}})


def checkpoint_line(cp: Mapping[str, Any]) -> str:
    return _dumps({"type": "checkpoint", **{f: cp[f] for f in CHECKPOINT_FIELDS}})


def end_line(entries: int, checkpoints: int) -> str:
    return _dumps({"type": "end", "entries": entries, "checkpoints": checkpoints})


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_ENTRY_STRINGS = ("prev_hash", "hash")
_CHECKPOINT_STRINGS = (
    "kind",
    "hash_upto",
    "prev_checkpoint_hash",
    "checkpoint_hash",
    "key_id",
    "public_key",
    "signature",
)


def _shape(n: int, obj: dict[str, Any], entry: bool) -> None:
    """An export line has exactly its fields, with the types the verifier relies on."""
    seq_key, keys, strings = (
        ("seq", _ENTRY_KEYS, _ENTRY_STRINGS)
        if entry
        else ("seq_upto", _CHECKPOINT_KEYS, _CHECKPOINT_STRINGS)
    )
    seq = obj.get(seq_key)
    if not _is_int(seq):
        raise _Broken(None, f"line {n}: {seq_key} is not an integer (edited?)")
    if set(obj) != keys:
        odd = ", ".join(sorted(set(obj) ^ keys))
        raise _Broken(seq, f"line {n}: unexpected or missing fields: {odd} (edited?)")
    if not isinstance(obj["time"], int | float) or isinstance(obj["time"], bool):
        raise _Broken(seq, f"line {n}: time is not a number (edited?)")
    if not all(isinstance(obj[k], str) for k in strings):
        raise _Broken(seq, f"line {n}: a hash, key or kind is not a string (edited?)")


def verify_export(lines: Iterable[str | bytes], public_key: bytes | None) -> VerifyResult:
    """Check an export file, line by line (memory stays flat)."""
    verifier: ChainVerifier | None = None
    counted: tuple[int, int] | None = None
    try:
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                raise _Broken(None, f"line {n}: not JSON") from None
            kind = obj.get("type") if isinstance(obj, dict) else None
            if verifier is None:
                if kind != "header" or obj.get("format") != FORMAT:
                    raise _Broken(None, f"line {n}: not a Corral audit export (no header)")
                if obj.get("version") != VERSION:
                    raise _Broken(None, f"line {n}: export version {obj.get('version')!r}")
                verifier = ChainVerifier(public_key, full=obj.get("since") is None)
            elif counted is not None:
                raise _Broken(None, f"line {n}: more lines after the end line (edited?)")
            elif kind == "entry":
                _shape(n, obj, entry=True)
                verifier.add_entry(obj)
            elif kind == "checkpoint":
                _shape(n, obj, entry=False)
                verifier.add_checkpoint(obj)
            elif kind == "end":
                counted = (obj.get("entries"), obj.get("checkpoints"))
            else:
                raise _Broken(None, f"line {n}: unknown line type {kind!r}")
            if verifier.failed:
                return verifier.finish()
    except _Broken as exc:
        checked, cps = (verifier.checked, verifier.checkpoints) if verifier else (0, 0)
        return VerifyResult(False, checked, exc.seq, exc.reason, cps)
    if verifier is None:
        return VerifyResult(False, 0, None, "empty file: not a Corral audit export")
    result = verifier.finish()
    if not result.ok:
        return result
    if counted is None:
        return VerifyResult(False, result.checked, None, "no end line (export truncated?)")
    if counted != (result.checked, result.checkpoints):
        reason = (
            f"the end line counts {counted[0]} entries and {counted[1]} checkpoints, "
            f"the file holds {result.checked} and {result.checkpoints} (lines deleted?)"
        )
        return VerifyResult(False, result.checked, None, reason, result.checkpoints)
    return result
