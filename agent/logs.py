"""Structured logs: one line per event, text, JSON or journald, with the ids of the work in hand.

Fields passed with ``extra={...}`` (node_id, command_id, request_id, ...) are printed on the
same line.  Used by the agent and, through this module only, the server.

Formats: ``text`` (a timestamp, for a terminal), ``json`` (one object per line, for log
shippers), ``journal`` (no timestamp, since journald stamps every line itself, and a
``<N>`` syslog priority prefix that journald turns into the entry's priority, so
``journalctl -p warning`` works), and ``auto``: ``journal`` when stderr is journald's stream
(systemd sets ``JOURNAL_STREAM`` to its device and inode), else ``text``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import TextIO

FORMATS = ("auto", "text", "json", "journal")

# sd-daemon(3) priorities: what journald reads from a "<N>" line prefix.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and v is not None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(_fields(record))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        extras = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += " " + extras
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JournalFormatter(logging.Formatter):
    """A line for journald: its priority as a ``<N>`` prefix, no timestamp of our own."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        extras = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"<{priority}>{record.name}: {record.getMessage()}"
        if extras:
            line += " " + extras
        if record.exc_info:
            # Every line of a traceback keeps the entry's priority.
            trace = self.formatException(record.exc_info).replace("\n", f"\n<{priority}>")
            line += f"\n<{priority}>" + trace
        return line


def under_journald(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (stderr) is the journal stream systemd connected us to."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    target = sys.stderr if stream is None else stream
    try:
        st = os.fstat(target.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def formatter(fmt: str) -> logging.Formatter:
    """The formatter for a ``--log-format`` value (one of FORMATS)."""
    if fmt == "auto":
        fmt = "journal" if under_journald() else "text"
    if fmt == "json":
        return JsonFormatter()
    if fmt == "journal":
        return JournalFormatter()
    return TextFormatter()


def configure(fmt: str = "auto", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access", "aiosqlite", "alembic"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
