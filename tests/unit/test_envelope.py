"""Envelope encryption: round trips, name binding, tampering, rewrapping, and silent errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from control_plane.errors import CorralError, DecryptionFailed, InvalidRequest, KeyRingError
from control_plane.security import envelope
from control_plane.security.keyring import KeyRing

SECRET = "correct horse battery staple ✓"
NAME = "/app/prod/db-pass"


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.load_or_create(tmp_path, {})


def _flip(b64: str, at: int = 0) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _assert_silent(exc: BaseException, ring: KeyRing) -> None:
    """The error carries neither the plaintext nor any key, nor a chained cause that might."""
    text = str(exc) + repr(exc)
    assert SECRET not in text
    assert "\n" not in str(exc)
    for key in ring.list():
        assert base64.b64encode(ring.get(key["key_id"]).material).decode() not in text
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


@pytest.mark.parametrize(
    "plaintext", [SECRET, "x", "é" * 4096, "line 1\nline 2", "a,b,c", "\x00binary-ish\x7f"]
)
def test_round_trip(ring: KeyRing, plaintext: str) -> None:
    blob = envelope.encrypt(ring, NAME, plaintext)
    assert envelope.decrypt(ring, NAME, json.loads(json.dumps(blob))) == plaintext


def test_the_blob_format(ring: KeyRing) -> None:
    blob = envelope.encrypt(ring, NAME, SECRET)
    assert set(blob) == {"v", "kek", "wrapped_key", "key_nonce", "nonce", "ciphertext"}
    assert blob["v"] == 1
    assert blob["kek"] == ring.current().key_id
    sizes = {k: len(base64.b64decode(str(blob[k]))) for k in ("wrapped_key", "key_nonce", "nonce")}
    assert sizes == {"wrapped_key": 48, "key_nonce": 12, "nonce": 12}
    # GCM: as long as the UTF-8 plaintext plus a 16-byte tag.
    assert len(base64.b64decode(str(blob["ciphertext"]))) == len(SECRET.encode()) + 16
    assert SECRET not in json.dumps(blob)


def test_the_same_plaintext_encrypts_differently_each_time(ring: KeyRing) -> None:
    one, two = envelope.encrypt(ring, NAME, SECRET), envelope.encrypt(ring, NAME, SECRET)
    for field in ("wrapped_key", "key_nonce", "nonce", "ciphertext"):
        assert one[field] != two[field]


@pytest.mark.parametrize("other", ["/app/prod/db-pass2", "/app/prod/DB-PASS", "/app/dev/db-pass"])
def test_a_blob_moved_to_another_name_does_not_decrypt(ring: KeyRing, other: str) -> None:
    blob = envelope.encrypt(ring, NAME, SECRET)
    with pytest.raises(DecryptionFailed) as info:
        envelope.decrypt(ring, other, blob)
    assert str(info.value).startswith(f"cannot decrypt {other}: ")
    _assert_silent(info.value, ring)


def test_a_ciphertext_spliced_from_another_blob_does_not_decrypt(ring: KeyRing) -> None:
    """A valid data key for the name does not open a value sealed for another name."""
    mine = envelope.encrypt(ring, NAME, "mine")
    theirs = envelope.encrypt(ring, "/other", SECRET)
    spliced = {**mine, "nonce": theirs["nonce"], "ciphertext": theirs["ciphertext"]}
    with pytest.raises(DecryptionFailed, match="the value does not verify") as info:
        envelope.decrypt(ring, NAME, spliced)
    _assert_silent(info.value, ring)


@pytest.mark.parametrize(
    ("field", "at"),
    [
        ("ciphertext", 0),
        ("ciphertext", -1),
        ("nonce", 5),
        ("wrapped_key", 0),
        ("wrapped_key", -1),
        ("key_nonce", 11),
    ],
)
def test_a_tampered_field_fails(ring: KeyRing, field: str, at: int) -> None:
    blob = envelope.encrypt(ring, NAME, SECRET)
    blob[field] = _flip(str(blob[field]), at)
    with pytest.raises(DecryptionFailed, match="does not verify") as info:
        envelope.decrypt(ring, NAME, blob)
    _assert_silent(info.value, ring)


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"v": 2}, "unsupported version"),
        ({"v": True}, "unsupported version"),
        ({"v": "1"}, "unsupported version"),
        ({"kek": "k 1"}, "'kek' is not a key id"),
        ({"kek": None}, "'kek' is not a key id"),
        ({"nonce": "@@@"}, "'nonce' is not base64"),
        ({"nonce": 12}, "'nonce' is not base64"),
        ({"nonce": base64.b64encode(b"x" * 11).decode()}, "'nonce' has the wrong length"),
        ({"key_nonce": base64.b64encode(b"x" * 16).decode()}, "'key_nonce' has the wrong length"),
        (
            {"wrapped_key": base64.b64encode(b"x" * 32).decode()},
            "'wrapped_key' has the wrong length",
        ),
        ({"ciphertext": base64.b64encode(b"x" * 15).decode()}, "'ciphertext' has the wrong length"),
        ({"ciphertext": ""}, "'ciphertext' has the wrong length"),
    ],
)
def test_a_malformed_blob_is_named(ring: KeyRing, change: dict[str, object], what: str) -> None:
    blob = {**envelope.encrypt(ring, NAME, SECRET), **change}
    with pytest.raises(DecryptionFailed) as info:
        envelope.decrypt(ring, NAME, blob)
    assert str(info.value) == f"cannot decrypt {NAME}: the stored value is malformed ({what})"
    _assert_silent(info.value, ring)


@pytest.mark.parametrize("missing", ["v", "kek", "wrapped_key", "key_nonce", "nonce", "ciphertext"])
def test_a_blob_missing_a_field_is_named(ring: KeyRing, missing: str) -> None:
    blob = envelope.encrypt(ring, NAME, SECRET)
    del blob[missing]
    with pytest.raises(DecryptionFailed, match=f"malformed \\(no '{missing}'\\)"):
        envelope.decrypt(ring, NAME, blob)


def test_a_blob_that_is_not_an_object(ring: KeyRing) -> None:
    with pytest.raises(DecryptionFailed, match="malformed \\(not an object\\)"):
        envelope.decrypt(ring, NAME, ["v", 1])  # type: ignore[arg-type]


def test_a_blob_relabelled_to_another_kek_fails(tmp_path: Path, ring: KeyRing) -> None:
    blob = envelope.encrypt(ring, NAME, SECRET)
    other = ring.rotate()
    with pytest.raises(DecryptionFailed, match=f"does not verify under key {other.key_id}") as info:
        envelope.decrypt(ring, NAME, {**blob, "kek": other.key_id})
    _assert_silent(info.value, ring)


def test_an_unknown_kek_is_a_key_ring_error(tmp_path: Path, ring: KeyRing) -> None:
    blob = envelope.encrypt(ring, NAME, SECRET)
    stranger = KeyRing.load_or_create(tmp_path / "elsewhere", {})
    with pytest.raises(KeyRingError) as info:
        envelope.decrypt(stranger, NAME, blob)
    assert str(info.value) == (
        f"value encrypted with key {blob['kek']}, which is not in the key ring ({stranger.source})"
    )
    _assert_silent(info.value, ring)


def test_a_replaced_key_with_the_same_id_fails_cleanly(tmp_path: Path, ring: KeyRing) -> None:
    """A key ring restored from the wrong backup: same id, different material."""
    blob = envelope.encrypt(ring, NAME, SECRET)
    assert ring.path is not None
    doc = json.loads(ring.path.read_text())
    doc["keys"][0]["key"] = base64.b64encode(b"\x07" * 32).decode()
    ring.path.write_text(json.dumps(doc))
    with pytest.raises(DecryptionFailed, match="or the key was replaced") as info:
        envelope.decrypt(KeyRing.load(tmp_path, {}), NAME, blob)
    _assert_silent(info.value, ring)


def test_without_a_key_ring_encrypt_and_decrypt_say_how_to_make_one(
    tmp_path: Path, ring: KeyRing
) -> None:
    blob = envelope.encrypt(ring, NAME, SECRET)
    empty = KeyRing.load(tmp_path / "empty", {})
    with pytest.raises(KeyRingError, match=r"no key ring at .*: run 'corral-server keys create'"):
        envelope.encrypt(empty, NAME, SECRET)
    with pytest.raises(KeyRingError, match="but there is no key ring") as info:
        envelope.decrypt(empty, NAME, blob)
    _assert_silent(info.value, ring)


def test_a_plaintext_that_is_not_utf8_is_refused_without_echo(ring: KeyRing) -> None:
    with pytest.raises(InvalidRequest) as info:
        envelope.encrypt(ring, NAME, SECRET + "\ud800")
    assert str(info.value) == f"the value of {NAME} is not valid UTF-8 text"
    _assert_silent(info.value, ring)


# Rotation and rewrapping


def test_old_values_stay_readable_after_rotate_and_new_ones_use_the_new_key(ring: KeyRing) -> None:
    old_blob = envelope.encrypt(ring, NAME, SECRET)
    new_key = ring.rotate()
    new_blob = envelope.encrypt(ring, NAME, "new")
    assert new_blob["kek"] == new_key.key_id != old_blob["kek"]
    assert envelope.decrypt(ring, NAME, old_blob) == SECRET
    assert envelope.decrypt(ring, NAME, new_blob) == "new"


def test_rewrap_moves_the_data_key_to_the_current_kek_and_keeps_the_ciphertext(
    tmp_path: Path, ring: KeyRing
) -> None:
    blob = envelope.encrypt(ring, NAME, SECRET)
    old = ring.current()
    new = ring.rotate()
    rewrapped = envelope.rewrap(ring, NAME, blob)
    assert rewrapped["kek"] == new.key_id
    assert rewrapped["ciphertext"] == blob["ciphertext"]
    assert rewrapped["nonce"] == blob["nonce"]
    assert rewrapped["wrapped_key"] != blob["wrapped_key"]
    assert rewrapped["key_nonce"] != blob["key_nonce"]
    assert set(rewrapped) == set(blob)
    ring.remove(old.key_id)
    ring = KeyRing.load(tmp_path, {})
    assert envelope.decrypt(ring, NAME, rewrapped) == SECRET
    with pytest.raises(KeyRingError, match=f"encrypted with key {old.key_id}, which is not in"):
        envelope.decrypt(ring, NAME, blob)


def test_rewrap_keeps_the_name_binding(ring: KeyRing) -> None:
    blob = envelope.encrypt(ring, NAME, SECRET)
    ring.rotate()
    with pytest.raises(DecryptionFailed):
        envelope.rewrap(ring, "/elsewhere", blob)
    rewrapped = envelope.rewrap(ring, NAME, blob)
    with pytest.raises(DecryptionFailed):
        envelope.decrypt(ring, "/elsewhere", rewrapped)


@pytest.mark.parametrize("field", ["ciphertext", "wrapped_key"])
def test_rewrap_refuses_a_damaged_blob_rather_than_carrying_it_over(
    ring: KeyRing, field: str
) -> None:
    blob = envelope.encrypt(ring, NAME, SECRET)
    ring.rotate()
    blob[field] = _flip(str(blob[field]))
    with pytest.raises(DecryptionFailed) as info:
        envelope.rewrap(ring, NAME, blob)
    _assert_silent(info.value, ring)


def test_every_error_is_a_corral_error(ring: KeyRing) -> None:
    for exc_type in (DecryptionFailed, KeyRingError):
        assert issubclass(exc_type, CorralError)
