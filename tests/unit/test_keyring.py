"""The key ring: its file, its sources, and that its key material never shows."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from control_plane.errors import KeyRingError, SetupError
from control_plane.security.keyring import ENV_FILE, ENV_INLINE, KEYRING_FILE, KeyRing

NO_ENV: dict[str, str] = {}


class Clock:
    def __init__(self, now: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = now

    def __call__(self) -> float:
        return self.now


def _materials(ring: KeyRing) -> list[str]:
    return [base64.b64encode(ring.get(k["key_id"]).material).decode() for k in ring.list()]


def _key(
    key_id: str, state: str = "active", created: str = "2026-01-01T00:00:00.000Z"
) -> dict[str, str]:
    material = base64.b64encode(key_id.encode().ljust(32, b"\0")).decode()
    return {"key_id": key_id, "created_at": created, "key": material, "state": state}


def _doc(*keys: dict[str, str]) -> str:
    return json.dumps({"version": 1, "keys": list(keys)})


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_create_writes_a_0600_file_and_makes_the_key_current(tmp_path: Path) -> None:
    ring = KeyRing.load(tmp_path, NO_ENV)
    assert not ring.exists
    key = ring.create()
    path = tmp_path / KEYRING_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.key_id.startswith("k-") and len(key.key_id) == 10
    assert len(key.material) == 32
    assert ring.current() == key
    assert [p.name for p in tmp_path.iterdir()] == [KEYRING_FILE]  # no temp file left behind
    again = KeyRing.load(tmp_path, NO_ENV)
    assert again.current() == key
    assert again.list() == [
        {
            "key_id": key.key_id,
            "created_at": again.list()[0]["created_at"],
            "state": "active",
            "current": True,
        }
    ]


def test_rotate_makes_a_new_current_key_and_keeps_the_old_one_for_reading(tmp_path: Path) -> None:
    clock = Clock()
    ring = KeyRing.load_or_create(tmp_path, NO_ENV, clock)
    first = ring.current()
    clock.now += 60
    second = ring.rotate()
    assert ring.current() == second != first
    assert ring.get(first.key_id).material == first.material
    reloaded = KeyRing.load(tmp_path, NO_ENV)
    assert [(k["key_id"], k["state"], k["current"]) for k in reloaded.list()] == [
        (first.key_id, "retired", False),
        (second.key_id, "active", True),
    ]
    assert reloaded.list()[1]["created_at"] == "2026-01-01T00:01:00.000Z"


def test_create_after_a_clock_step_back_still_makes_the_new_key_current(tmp_path: Path) -> None:
    clock = Clock()
    ring = KeyRing.load_or_create(tmp_path, NO_ENV, clock)
    clock.now -= 3600
    newer = ring.create()
    assert KeyRing.load(tmp_path, NO_ENV).current() == newer


def test_the_newest_active_key_is_current_wherever_it_sits_in_the_list(tmp_path: Path) -> None:
    _write(
        tmp_path / KEYRING_FILE,
        _doc(
            _key("k-new", created="2026-03-01T00:00:00Z"),
            _key("k-old", created="2026-01-01T00:00:00Z"),
            _key("k-newest-but-retired", "retired", created="2026-05-01T00:00:00Z"),
        ),
    )
    assert KeyRing.load(tmp_path, NO_ENV).current().key_id == "k-new"


def test_list_and_repr_never_show_key_material(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path, NO_ENV)
    ring.rotate()
    listing = json.dumps(ring.list())
    shown = listing + repr(ring) + repr(ring.current()) + str(ring.current())
    for material in _materials(ring):
        assert material not in shown
    assert set(ring.list()[0]) == {"key_id", "created_at", "state", "current"}


def test_load_or_create_keeps_an_existing_ring(tmp_path: Path) -> None:
    key = KeyRing.load_or_create(tmp_path, NO_ENV).current()
    assert KeyRing.load_or_create(tmp_path, NO_ENV).list() == [
        {
            "key_id": key.key_id,
            "created_at": KeyRing.load(tmp_path, NO_ENV).list()[0]["created_at"],
            "state": "active",
            "current": True,
        }
    ]


def test_a_missing_ring_is_an_error_only_when_used(tmp_path: Path) -> None:
    ring = KeyRing.load(tmp_path, NO_ENV)  # no error yet
    assert ring.list() == []
    with pytest.raises(KeyRingError) as info:
        ring.current()
    assert isinstance(info.value, SetupError)
    assert str(info.value) == (
        f"no key ring at {tmp_path / KEYRING_FILE}: run 'corral-server keys create' "
        f"(or set {ENV_INLINE} or {ENV_FILE})"
    )
    with pytest.raises(
        KeyRingError, match="value encrypted with key k-0badf00d, but there is no key ring"
    ):
        ring.get("k-0badf00d")


def test_an_unknown_key_id_is_named(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path, NO_ENV)
    with pytest.raises(KeyRingError) as info:
        ring.get("k-0badf00d")
    assert str(info.value) == (
        "value encrypted with key k-0badf00d, which is not in the key ring "
        f"({tmp_path / KEYRING_FILE})"
    )


def test_a_ring_of_retired_keys_has_no_current_key(tmp_path: Path) -> None:
    _write(tmp_path / KEYRING_FILE, _doc(_key("k-1", "retired")))
    ring = KeyRing.load(tmp_path, NO_ENV)
    assert ring.get("k-1").state == "retired"
    with pytest.raises(KeyRingError, match="has no active key: run 'corral-server keys create'"):
        ring.current()
    assert ring.list()[0]["current"] is False


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602, 0o610])
def test_a_ring_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = KeyRing.load_or_create(tmp_path, NO_ENV).path
    assert path is not None
    path.chmod(mode)
    with pytest.raises(KeyRingError) as info:
        KeyRing.load(tmp_path, NO_ENV)
    assert str(info.value) == (
        f"key ring {path} has permissions {mode:04o}, which are too open: "
        f"it must be accessible by its owner only (chmod 600 {path})"
    )


def test_0400_is_accepted(tmp_path: Path) -> None:
    key = KeyRing.load_or_create(tmp_path, NO_ENV).current()
    (tmp_path / KEYRING_FILE).chmod(0o400)
    assert KeyRing.load(tmp_path, NO_ENV).current() == key


def test_a_directory_in_place_of_the_ring_is_refused(tmp_path: Path) -> None:
    (tmp_path / KEYRING_FILE).mkdir(mode=0o700)
    with pytest.raises(KeyRingError, match="is not a regular file"):
        KeyRing.load(tmp_path, NO_ENV)


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ("", "not JSON (Expecting value: line 1 column 1 (char 0))"),
        ("{", "not JSON"),
        ("[]", 'expected an object {"version": 1, "keys": [...]}'),
        ('{"version": 1}', "expected an object"),
        ('{"version": 2, "keys": []}', "unsupported version 2 (expected 1)"),
        ('{"version": 1, "keys": [], "extra": 1}', "unknown field 'extra'"),
        ('{"version": 1, "keys": [1]}', "keys[0] is not an object"),
        (_doc({k: v for k, v in _key("k-1").items() if k != "key"}), "keys[0] lacks 'key'"),
        (_doc({**_key("k-1"), "comment": "x"}), "keys[0] has unknown field 'comment'"),
        (_doc({**_key("k-1"), "key_id": "k 1"}), "keys[0].key_id must be 1-64 letters"),
        (_doc({**_key("k-1"), "key_id": 7}), "keys[0].key_id must be"),
        (
            _doc({**_key("k-1"), "created_at": "yesterday"}),
            "keys[0].created_at must be an RFC 3339",
        ),
        (_doc({**_key("k-1"), "created_at": "2026-01-01T00:00:00"}), "with a zone"),
        (_doc({**_key("k-1"), "key": "not base64!"}), "keys[0].key must be the base64 of 32 bytes"),
        (_doc({**_key("k-1"), "key": base64.b64encode(b"short").decode()}), "keys[0].key must be"),
        (_doc({**_key("k-1"), "key": 42}), "keys[0].key must be"),
        (_doc({**_key("k-1"), "state": "disabled"}), "keys[0].state must be 'active' or 'retired'"),
        (_doc(_key("k-1"), _key("k-1")), "key id k-1 appears twice"),
    ],
)
def test_a_malformed_ring_is_one_line_naming_the_file(
    tmp_path: Path, content: str, what: str
) -> None:
    path = _write(tmp_path / KEYRING_FILE, content)
    with pytest.raises(KeyRingError) as info:
        KeyRing.load(tmp_path, NO_ENV)
    message = str(info.value)
    assert message.startswith(f"{path}: malformed key ring: ")
    assert what in message
    assert "\n" not in message


def test_a_malformed_ring_does_not_echo_its_keys(tmp_path: Path) -> None:
    material = base64.b64encode(b"S" * 31).decode()  # one byte short
    _write(tmp_path / KEYRING_FILE, _doc({**_key("k-1"), "key": material}))
    with pytest.raises(KeyRingError) as info:
        KeyRing.load(tmp_path, NO_ENV)
    assert material not in str(info.value)


def test_binary_garbage_is_reported_as_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / KEYRING_FILE
    path.write_bytes(b"\xff\xfe\x00garbage")
    path.chmod(0o600)
    with pytest.raises(KeyRingError, match="malformed key ring: not UTF-8 text"):
        KeyRing.load(tmp_path, NO_ENV)


# Sources and their precedence: env inline > env file > data dir file.


def test_env_inline_wins_over_env_file_and_data_dir(tmp_path: Path) -> None:
    _write(tmp_path / KEYRING_FILE, _doc(_key("k-datadir")))
    other = _write(tmp_path / "elsewhere.json", _doc(_key("k-envfile")))
    env = {ENV_INLINE: _doc(_key("k-inline")), ENV_FILE: str(other)}
    ring = KeyRing.load(tmp_path, env)
    assert ring.current().key_id == "k-inline"
    assert ring.source == ENV_INLINE


def test_env_file_wins_over_data_dir(tmp_path: Path) -> None:
    _write(tmp_path / KEYRING_FILE, _doc(_key("k-datadir")))
    other = _write(tmp_path / "elsewhere.json", _doc(_key("k-envfile")))
    ring = KeyRing.load(tmp_path, {ENV_FILE: str(other)})
    assert ring.current().key_id == "k-envfile"
    clock = Clock()
    ring = KeyRing.load(tmp_path, {ENV_FILE: str(other)}, clock)
    new = ring.rotate()  # saved to the env file, not the data dir
    assert [k["key_id"] for k in KeyRing.load(tmp_path, {ENV_FILE: str(other)}).list()] == [
        "k-envfile",
        new.key_id,
    ]
    assert KeyRing.load(tmp_path, NO_ENV).current().key_id == "k-datadir"


def test_empty_env_vars_count_as_unset(tmp_path: Path) -> None:
    _write(tmp_path / KEYRING_FILE, _doc(_key("k-datadir")))
    ring = KeyRing.load(tmp_path, {ENV_INLINE: "", ENV_FILE: "  "})
    assert ring.current().key_id == "k-datadir"


def test_env_file_is_held_to_the_same_mode_rule(tmp_path: Path) -> None:
    other = _write(tmp_path / "elsewhere.json", _doc(_key("k-envfile")), mode=0o644)
    with pytest.raises(KeyRingError, match="permissions 0644, which are too open"):
        KeyRing.load(tmp_path, {ENV_FILE: str(other)})


def test_a_missing_env_file_is_created_by_create(tmp_path: Path) -> None:
    target = tmp_path / "secrets" / "ring.json"
    ring = KeyRing.load(tmp_path, {ENV_FILE: str(target)})
    with pytest.raises(KeyRingError, match=f"no key ring at {target}"):
        ring.current()
    key = ring.create()
    assert KeyRing.load(tmp_path, {ENV_FILE: str(target)}).current() == key
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not (tmp_path / KEYRING_FILE).exists()


def test_an_inline_ring_is_read_only(tmp_path: Path) -> None:
    ring = KeyRing.load(tmp_path, {ENV_INLINE: _doc(_key("k-inline"))})
    for change in (ring.create, ring.rotate):
        with pytest.raises(
            KeyRingError, match=f"comes from {ENV_INLINE} and cannot be changed here"
        ):
            change()
    assert ring.current().key_id == "k-inline"
    assert ring.current().state == "active"  # a refused rotate leaves the ring as it was
    assert not (tmp_path / KEYRING_FILE).exists()


def test_a_malformed_inline_ring_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(KeyRingError) as info:
        KeyRing.load(tmp_path, {ENV_INLINE: "{nope"})
    assert str(info.value).startswith(f"{ENV_INLINE}: malformed key ring: not JSON")


def test_load_reads_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_INLINE, _doc(_key("k-from-env")))
    assert KeyRing.load(tmp_path).current().key_id == "k-from-env"


# Removing a key


def test_remove_drops_a_retired_key_but_not_the_current_one(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path, NO_ENV)
    old = ring.current()
    new = ring.rotate()
    with pytest.raises(
        KeyRingError, match=f"{new.key_id} is the current key: rotate before removing it"
    ):
        ring.remove(new.key_id)
    ring.remove(old.key_id)
    reloaded = KeyRing.load(tmp_path, NO_ENV)
    assert [k["key_id"] for k in reloaded.list()] == [new.key_id]
    with pytest.raises(KeyRingError, match="not in the key ring"):
        reloaded.get(old.key_id)


def test_a_failed_write_is_reported_and_changes_nothing(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path, NO_ENV)
    before = ring.list()
    path = tmp_path / KEYRING_FILE
    path.unlink()
    (path / "in-the-way").mkdir(parents=True)  # a directory where the file should go
    with pytest.raises(KeyRingError, match=f"cannot write key ring {path}"):
        ring.rotate()
    assert ring.list() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEYRING_FILE]  # no temp file left


def test_load_or_create_fills_an_empty_ring_file(tmp_path: Path) -> None:
    _write(tmp_path / KEYRING_FILE, _doc())
    ring = KeyRing.load_or_create(tmp_path, NO_ENV)
    assert KeyRing.load(tmp_path, NO_ENV).current() == ring.current()
