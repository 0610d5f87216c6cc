"""Shell completion: ``corral completion SHELL`` prints click's script, ``--install-completion``
saves it and hooks it into the user's shell (bash, zsh, fish; detected from $SHELL).

bash and zsh: the script goes next to the config file and one marked line in ~/.bashrc or
~/.zshrc sources it (added once).  fish: the script goes to fish's completions directory,
which fish loads by itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import click

from control_plane.cli.context import output_option
from control_plane.cli.errors import CliError

SHELLS = ("bash", "zsh", "fish")
PROG_NAME = "corral"
COMPLETE_VAR = "_CORRAL_COMPLETE"
MARKER = "# corral shell completion"


def script(cli: click.Command, shell: str) -> str:
    from click.shell_completion import get_completion_class

    comp_cls = get_completion_class(shell)
    if comp_cls is None:  # pragma: no cover - SHELLS are all built into click
        raise CliError(f"no completion support for {shell}")
    return comp_cls(cli, {}, PROG_NAME, COMPLETE_VAR).source()


def detect_shell(env: Mapping[str, str]) -> str:
    shell = Path(env.get("SHELL", "")).name
    if shell not in SHELLS:
        raise CliError(
            f"cannot install completion for shell {shell or '(unset $SHELL)'!r}: "
            f"supported are {', '.join(SHELLS)}; or run `corral completion SHELL`"
        )
    return shell


def install(cli: click.Command, shell: str, env: Mapping[str, str] | None = None) -> str:
    """Install completion for ``shell``; returns a sentence saying what was done."""
    from control_plane.cli.profiles import config_path

    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    source = script(cli, shell)
    try:
        if shell == "fish":
            base = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
            target = base / "fish" / "completions" / "corral.fish"
            _write(target, source)
            return f"Installed fish completion in {target}; it loads in new fish sessions."
        target = config_path(env).parent / f"completion.{shell}"
        _write(target, source)
        rc = home / (".bashrc" if shell == "bash" else ".zshrc")
        added = _hook(rc, shell, target)
    except OSError as exc:
        raise CliError(f"cannot install completion: {exc.strerror}: {exc.filename}") from None
    done = "added a line to" if added else "already sourced from"
    return f"Installed {shell} completion in {target} ({done} {rc}); open a new shell to use it."


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _hook(rc: Path, shell: str, target: Path) -> bool:
    """Add the sourcing line to ``rc`` unless it is already there; True if added."""
    existing = rc.read_text(encoding="utf-8") if rc.exists() else ""
    if MARKER in existing:
        return False
    quoted = "'" + str(target).replace("'", "'\\''") + "'"
    line = f"[ -f {quoted} ] && . {quoted}"
    if shell == "zsh":  # click's zsh script calls compdef, which needs compinit
        line = f"(( $+functions[compdef] )) || {{ autoload -Uz compinit && compinit }}; {line}"
    prefix = "" if not existing or existing.endswith("\n") else "\n"
    with rc.open("a", encoding="utf-8") as out:
        out.write(f"{prefix}{line}  {MARKER}\n")
    return True


def install_callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """The eager ``--install-completion`` flag: install, report, exit 0."""
    if not value or ctx.resilient_parsing:
        return
    shell = detect_shell(os.environ)
    click.echo(install(ctx.command, shell))
    ctx.exit(0)


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@output_option
@click.pass_context
def completion(ctx: click.Context, shell: str, output: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    bash:  eval "$(corral completion bash)"   in ~/.bashrc
    zsh:   eval "$(corral completion zsh)"    in ~/.zshrc, after compinit
    fish:  corral completion fish > ~/.config/fish/completions/corral.fish
    """
    text = script(ctx.find_root().command, shell)
    if output == "json":
        from control_plane.cli.output import emit_json

        emit_json({"shell": shell, "script": text})
    else:
        click.echo(text, nl=False)
