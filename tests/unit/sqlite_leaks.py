"""Names the test that opened an aiosqlite connection left unclosed.

The garbage collector finds such a connection whenever it runs, often tests later, and
aiosqlite's warning (an error here) then fails whatever test is running, saying nothing of
where the connection came from.  Each connection remembers the test that was running when it
was made, and the warning names it."""

from __future__ import annotations

import warnings
from typing import Any

import aiosqlite.core

current_test = ["(no test: collection or a session fixture)"]
_init = aiosqlite.core.Connection.__init__


def _remembering_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _init(self, *args, **kwargs)
    self.corral_opened_by = current_test[0]


def _naming_del(self: Any) -> None:
    if getattr(self, "_connection", None) is None:
        return
    warnings.warn(
        f"an aiosqlite connection opened in {getattr(self, 'corral_opened_by', '?')} was "
        "deleted before being closed",
        ResourceWarning,
        stacklevel=1,
    )


def install() -> None:
    aiosqlite.core.Connection.__init__ = _remembering_init  # type: ignore[method-assign]
    aiosqlite.core.Connection.__del__ = _naming_del  # type: ignore[attr-defined]
