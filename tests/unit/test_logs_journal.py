"""Logs under systemd: journald's format when stderr is the journal stream, text otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import logs

SNIPPET = """
import logging, sys
from agent import logs
logs.configure(sys.argv[1])
log = logging.getLogger("corral.test")
log.warning("disk nearly full", extra={"node_id": "mi-0123", "command_id": None})
log.info("polled")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("boom")
"""


def _run(tmp_path: Path, fmt: str, journal_stream: str | None) -> str:
    err = tmp_path / "stderr"
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    with err.open("wb") as sink:
        if journal_stream == "match":
            st = os.fstat(sink.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        elif journal_stream is not None:
            env["JOURNAL_STREAM"] = journal_stream
        subprocess.run(
            [sys.executable, "-c", SNIPPET, fmt], stderr=sink, env=env, check=True, timeout=60
        )
    return err.read_text()


def test_auto_under_journald_writes_priorities_without_timestamps(tmp_path: Path) -> None:
    lines = _run(tmp_path, "auto", "match").splitlines()
    assert lines[0] == "<4>corral.test: disk nearly full node_id=mi-0123"
    assert lines[1] == "<6>corral.test: polled"
    assert lines[2] == "<3>corral.test: boom"
    # the traceback's lines keep the error priority, so `journalctl -p err` shows them whole
    assert all(line.startswith("<3>") for line in lines[2:])
    assert lines[-1] == "<3>ZeroDivisionError: division by zero"


@pytest.mark.parametrize("stream", [None, "1:2"])
def test_auto_elsewhere_is_text_with_timestamps(tmp_path: Path, stream: str | None) -> None:
    # JOURNAL_STREAM inherited from a parent whose stderr was the journal, but ours is a file
    first = _run(tmp_path, "auto", stream).splitlines()[0]
    assert not first.startswith("<")
    assert first.endswith("WARNING corral.test: disk nearly full node_id=mi-0123")
    assert first[:4].isdigit()


def test_json_stays_json_under_journald(tmp_path: Path) -> None:
    import json

    first = json.loads(_run(tmp_path, "json", "match").splitlines()[0])
    assert first["event"] == "disk nearly full" and first["node_id"] == "mi-0123"


def test_every_format_is_offered_by_both_programs() -> None:
    assert logs.FORMATS == ("auto", "text", "json", "journal")
    out = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "{auto,text,json,journal}" in out
