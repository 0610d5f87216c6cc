"""Who a session's program runs as (POSIX): the start_session's ``run_as`` user, or the agent's
own user; the login shell, the environment and the working directory that go with them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agent.sessions.program import Refused

FALLBACK_SHELL: Final = "/bin/sh"
ROOT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
USER_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
SHELLS_FILE: Final = Path("/etc/shells")


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str
    shell: str  # the user's shell if /etc/shells lists it and it runs, else /bin/sh
    switch: bool  # the child changes to this user (it is not the agent's own)

    @property
    def groups(self) -> list[int]:
        return os.getgrouplist(self.name, self.gid)

    @property
    def cwd(self) -> str:
        return self.home if os.path.isdir(self.home) else "/"

    def environment(self, term: str | None = None) -> dict[str, str]:
        env = {
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "SHELL": self.shell,
            "PATH": ROOT_PATH if self.uid == 0 else USER_PATH,
        }
        if term is not None:
            env["TERM"] = term
        for name in ("LANG", "LC_ALL"):  # the node's locale, as SSM passes its environment
            if name in os.environ:
                env[name] = os.environ[name]
        return env


def resolve(run_as: str | None) -> User:
    """The user to run as; Refused (naming the user) if there is none such here or the agent
    may not become it."""
    import pwd

    own = os.geteuid()
    try:
        entry = pwd.getpwuid(own) if run_as is None else pwd.getpwnam(run_as)
    except KeyError:
        if run_as is None:
            raise Refused(f"the agent's own user (uid {own}) has no passwd entry") from None
        raise Refused(f"run-as user {run_as!r} does not exist on this node") from None
    switch = entry.pw_uid != own
    if switch and own != 0:
        mine = _name(own)
        raise Refused(
            f"the agent runs as {mine!r}, not root: it cannot start a session as {run_as!r}"
        )
    return User(
        entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, _shell(entry.pw_shell), switch
    )


def _shell(shell: str) -> str:
    try:
        listed = {line.strip() for line in SHELLS_FILE.read_text(encoding="utf-8").splitlines()} - {
            ""
        }
    except OSError:
        return FALLBACK_SHELL
    if shell in listed and os.access(shell, os.X_OK):
        return shell
    return FALLBACK_SHELL


def _name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
