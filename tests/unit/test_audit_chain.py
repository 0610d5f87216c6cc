"""The audit chain without a database: redaction, hashing, keys, checkpoints, the verifier."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from control_plane.errors import InvalidRequest, SetupError
from control_plane.security.audit_chain import (
    ENTRY_FIELDS,
    GENESIS_HASH,
    KEY_FILE,
    PUBLIC_KEY_FILE,
    REDACTED,
    AuditKey,
    canonical,
    checkpoint_problem,
    entry_hash,
    load_public_key,
    make_checkpoint,
    redact,
)
from control_plane.security.audit_verify import (
    checkpoint_line,
    end_line,
    entry_line,
    header_line,
    verify,
    verify_export,
)

KEY = AuditKey.generate()


def chain(first: int, last: int, prev: str = GENESIS_HASH) -> list[dict[str, Any]]:
    entries = []
    for seq in range(first, last + 1):
        entry: dict[str, Any] = {f: None for f in ENTRY_FIELDS}
        entry.update(
            seq=seq,
            id=f"id-{seq}",
            time=1_700_000_000.0 + seq,
            identity_type="token",
            action="commands:Send",
            resource="node/mi-1",
            outcome="allowed",
            request={"n": seq, "name": "ünïcode"},
            prev_hash=prev,
        )
        entry["hash"] = prev = entry_hash(entry)
        entries.append(entry)
    return entries


def cp(
    entries: list[dict[str, Any]], seq: int, kind: str = "periodic", prev: str = GENESIS_HASH
) -> dict[str, Any]:
    target = next(e for e in entries if e["seq"] == seq)
    return make_checkpoint(KEY, kind, seq, target["hash"], target["time"] + 0.5, prev)


# Encoding and hashing -----------------------------------------------------------------------


def test_canonical_encoding_is_sorted_compact_utf8() -> None:
    assert canonical({"b": 1, "a": [1.5, None, "é"]}) == '{"a":[1.5,null,"é"],"b":1}'.encode()
    with pytest.raises(ValueError):
        canonical({"x": math.nan})


def test_the_hash_covers_every_field_but_itself() -> None:
    entry = chain(1, 1)[0]
    expected = hashlib.sha256(canonical({f: entry[f] for f in ENTRY_FIELDS})).hexdigest()
    assert entry["hash"] == expected and "hash" not in ENTRY_FIELDS
    for field in ENTRY_FIELDS:
        changed = {**entry, field: "changed" if entry[field] != "changed" else "other"}
        assert entry_hash(changed) != entry["hash"], field


# Redaction ----------------------------------------------------------------------------------


def test_redaction_masks_nested_secrets_and_keeps_the_rest() -> None:
    request = {
        "Name": "deploy",
        "password": "hunter2",
        "auth": {"client_secret": "s3", "apiKey": "k", "token_id": "tok-1", "exit_code": 3},
        "activation_code": "ABC",
        "activationCode": "ABC",
        "code": "XYZ",
        "steps": [{"env": {"DB_PASSWORD": "p", "HOME": "/root"}}, {"Authorization": "Bearer x"}],
        "parameters": [
            {"name": "/a", "type": "SecureString", "value": "secret value"},
            {"name": "/b", "Type": "String", "Value": "plain"},
        ],
        "note": "crl_abcdefgh leaked in a comment field",
        "empty_password": "",
        "access_token": None,
    }
    assert redact(request) == {
        "Name": "deploy",
        "password": REDACTED,
        "auth": {
            "client_secret": REDACTED,
            "apiKey": REDACTED,
            "token_id": "tok-1",
            "exit_code": 3,
        },
        "activation_code": REDACTED,
        "activationCode": REDACTED,
        "code": REDACTED,
        "steps": [{"env": {"DB_PASSWORD": REDACTED, "HOME": "/root"}}, {"Authorization": REDACTED}],
        "parameters": [
            {"name": "/a", "type": "SecureString", "value": REDACTED},
            {"name": "/b", "Type": "String", "Value": "plain"},
        ],
        "note": REDACTED,
        "empty_password": "",
        "access_token": None,
    }
    assert request["password"] == "hunter2"  # a copy: the caller's object is untouched
    assert redact(redact(request)) == redact(request)


def test_redaction_makes_anything_storable() -> None:
    deep: Any = "bottom"
    for _ in range(100):
        deep = {"d": deep}
    out = redact(
        {1: (1, 2), "f": math.inf, "b": b"\x00\x01", "s": "bad \ud800", "long": "x" * 10_000}
    )
    assert out["1"] == [1, 2] and out["f"] == "inf" and out["b"] == "<2 bytes>"
    assert out["s"] == "bad ?" and len(out["long"]) == 4096
    assert "too deep" in json.dumps(redact(deep))
    assert len(redact(list(range(5000)))) == 1001
    canonical(redact(deep))  # encodable


# Keys and checkpoints -----------------------------------------------------------------------


def test_key_files_are_made_once_and_openssl_compatible(tmp_path: Path) -> None:
    key = AuditKey.load_or_create(tmp_path)
    assert AuditKey.load_or_create(tmp_path).key_id == key.key_id
    private = serialization.load_pem_private_key((tmp_path / KEY_FILE).read_bytes(), None)
    assert isinstance(private, Ed25519PrivateKey)
    public = serialization.load_pem_public_key((tmp_path / PUBLIC_KEY_FILE).read_bytes())
    assert isinstance(public, Ed25519PublicKey)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == key.public_key == load_public_key((tmp_path / PUBLIC_KEY_FILE).read_bytes())
    assert load_public_key(key.public_b64.encode()) == key.public_key
    (tmp_path / PUBLIC_KEY_FILE).unlink()  # the public half is rewritten from the private one
    AuditKey.load_or_create(tmp_path)
    assert load_public_key((tmp_path / PUBLIC_KEY_FILE).read_bytes()) == key.public_key


def test_bad_key_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("not a key")
    with pytest.raises(SetupError, match="not an Ed25519 private key"):
        AuditKey.load_or_create(tmp_path)
    with pytest.raises(SetupError, match="cannot use"):
        AuditKey.load_or_create(tmp_path / "missing-dir")
    for data in (b"", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", b"QUJD"):
        with pytest.raises(InvalidRequest):
            load_public_key(data)


def test_a_checkpoint_verifies_only_with_its_key_and_content() -> None:
    entries = chain(1, 3)
    good = cp(entries, 3)
    assert checkpoint_problem(good, KEY.public_key) is None
    assert checkpoint_problem(good, None) is None
    other = AuditKey.generate()
    assert "not the trusted key" in str(checkpoint_problem(good, other.public_key))
    forged = make_checkpoint(other, "periodic", 3, entries[2]["hash"], 1.0, GENESIS_HASH)
    posing = {**forged, "key_id": KEY.key_id}
    assert checkpoint_problem(posing, KEY.public_key) == (
        "signature does not verify (forged or edited?)"
    )
    assert "does not match its key_id" in str(checkpoint_problem(posing, None))
    assert "malformed" in str(checkpoint_problem({**good, "signature": "%%"}, KEY.public_key))
    assert "unknown kind" in str(checkpoint_problem({**good, "kind": "x"}, KEY.public_key))
    with pytest.raises(ValueError):
        make_checkpoint(KEY, "hourly", 3, entries[2]["hash"], 1.0, GENESIS_HASH)


# The verifier's start rules -----------------------------------------------------------------


def test_a_full_chain_starts_at_entry_one_or_at_a_retention_checkpoint() -> None:
    entries = chain(1, 20)
    periodic = cp(entries, 10)
    tail = entries[10:]
    assert verify(entries, [periodic], KEY.public_key).ok
    # Entries 1..10 gone, with only a periodic checkpoint at 10: that is deletion.
    result = verify(tail, [periodic], KEY.public_key)
    assert (result.ok, result.first_bad_seq, result.reason) == (
        False,
        11,
        "entries 1..10 missing (deleted?)",
    )
    # ... but a range may start at any signed checkpoint.
    assert verify(tail, [periodic], KEY.public_key, full=False).ok
    retention = cp(entries, 10, "retention", periodic["checkpoint_hash"])
    assert verify(tail, [retention, periodic], KEY.public_key).ok
    assert verify(entries[12:], [retention], KEY.public_key).reason == (
        "entries 11..12 missing (deleted?)"
    )
    unanchored = verify(tail, [], KEY.public_key, full=False)
    assert unanchored.first_bad_seq == 11 and "no signed checkpoint at entry 10" in (
        unanchored.reason
    )


def test_the_first_entry_must_link_to_its_anchor() -> None:
    entries = chain(1, 5)
    entries[0] = {**entries[0], "prev_hash": "1" * 64}
    assert (
        verify(entries, [], None).reason == "entry 1: prev_hash is not the genesis hash (edited?)"
    )
    rest = chain(11, 12, prev="2" * 64)
    anchor = make_checkpoint(KEY, "retention", 10, "3" * 64, 1.0, GENESIS_HASH)
    assert verify(rest, [anchor], KEY.public_key).reason == (
        "entry 11: prev_hash does not link to the signed checkpoint"
    )


def test_checkpoints_beyond_the_last_entry_and_the_head_reveal_a_cut_tail() -> None:
    entries = chain(1, 10)
    result = verify(entries[:7], [cp(entries, 10)], KEY.public_key)
    assert (result.first_bad_seq, result.reason) == (8, "entries 8..10 missing (deleted?)")
    result = verify(entries[:7], [], KEY.public_key, head=(10, entries[9]["hash"]))
    assert (result.first_bad_seq, result.reason) == (8, "entries 8..10 missing (deleted?)")
    result = verify(entries, [], KEY.public_key, head=(10, "9" * 64))
    assert result.reason == "entry 10: hash differs from the chain's head (rewritten?)"
    assert verify(entries, [], KEY.public_key, head=(9, "9" * 64)).first_bad_seq == 10
    empty = verify([], [cp(entries, 10)], KEY.public_key)
    assert empty.reason == "entries 1..10 missing (deleted?)"
    assert verify([], [], None, head=(0, GENESIS_HASH)).ok


def test_a_checkpoint_signed_over_a_different_hash_blames_the_unvouched_entries() -> None:
    entries = chain(1, 20)
    first = cp(entries, 5)
    wrong = make_checkpoint(KEY, "periodic", 15, "4" * 64, 2.0, first["checkpoint_hash"])
    result = verify(entries, [first, wrong], KEY.public_key)
    assert result.first_bad_seq == 6 and result.reason.startswith(
        "entries 6..15 do not match the periodic checkpoint at entry 15"
    )


# Export lines -------------------------------------------------------------------------------


def export(entries: list[dict[str, Any]], cps: list[dict[str, Any]]) -> list[str]:
    lines = [header_line(1.0, None, None)]
    by_seq = {c["seq_upto"]: c for c in cps}
    for e in entries:
        lines.append(entry_line(e))
        if e["seq"] in by_seq:
            lines.append(checkpoint_line(by_seq[e["seq"]]))
    return [*lines, end_line(len(entries), len(cps))]


@pytest.mark.parametrize(
    ("mutate", "first_bad", "reason"),
    [
        (lambda ls: [], None, "empty file: not a Corral audit export"),
        (lambda ls: ["[]\n", *ls], None, "line 1: not a Corral audit export (no header)"),
        (
            lambda ls: [ls[0].replace('"version":1', '"version":9'), *ls[1:]],
            None,
            "line 1: export version 9",
        ),
        (lambda ls: [*ls, ls[1]], None, "line 8: more lines after the end line (edited?)"),
        (lambda ls: [ls[0], '{"type":"note"}', *ls[1:]], None, "line 2: unknown line type 'note'"),
        (
            lambda ls: [ls[0], ls[1].replace('"seq":1', '"seq":"1"'), *ls[2:]],
            None,
            "line 2: seq is not an integer (edited?)",
        ),
        (
            lambda ls: [ls[0], ls[1].replace('"seq":1', '"seq":true'), *ls[2:]],
            None,
            "line 2: seq is not an integer (edited?)",
        ),
        (
            lambda ls: [ls[0], ls[1].replace('"time":', '"time":"x","t":'), *ls[2:]],
            1,
            "line 2: unexpected or missing fields: t (edited?)",
        ),
        (
            lambda ls: [ls[0], *ls[1:3], ls[3].replace('"time":', '"time":"1",  "x":'), *ls[4:]],
            3,
            "line 4: unexpected or missing fields: x (edited?)",
        ),
        (
            lambda ls: [*ls[:4], ls[4].replace('"signature":"', '"signature":7,"s":"'), *ls[5:]],
            3,
            "line 5: unexpected or missing fields: s (edited?)",
        ),
    ],
)
def test_bad_export_files_are_refused(mutate: Any, first_bad: int | None, reason: str) -> None:
    entries = chain(1, 4)
    lines = export(entries, [cp(entries, 3)])
    assert verify_export(lines, KEY.public_key).ok
    result = verify_export(mutate(lines), KEY.public_key)
    assert (result.ok, result.first_bad_seq, result.reason) == (False, first_bad, reason)


def test_export_lines_with_wrong_types_are_refused() -> None:
    entries = chain(1, 2)
    lines = export(entries, [])
    obj = json.loads(lines[1])
    for field, value in (("time", "1"), ("hash", 5), ("time", True)):
        edited = [lines[0], json.dumps({**obj, field: value}), *lines[2:]]
        result = verify_export(edited, KEY.public_key)
        assert not result.ok and result.first_bad_seq == 1 and "(edited?)" in result.reason
