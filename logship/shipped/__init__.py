"""The files a wheel ships beside the code, and `logship init`, which puts them in place.

The checkout's top-level formats/ and systemd/ are symlinks to this package's folders, so
the repository and every wheel hold one copy of them.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LogshipError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

DEFAULT_DIR = "/etc/logship"        # the unit's ConfigurationDirectory=
DEFAULT_CONFIG = f"{DEFAULT_DIR}/logship.toml"
INSTALLED_BIN = "/opt/logship/venv/bin/logship"  # where the shipped unit expects the command
INSTALLED_DOCS = "/opt/logship/venv/share/doc/logship"  # where pip puts the pages (pyproject's data-files)


def _here() -> Traversable:
    """This package's files; importlib.resources is imported when first needed, not at every start."""
    from importlib import resources
    return resources.files(__package__)


def shipped(name: str) -> str:
    """The text of a shipped file: "formats/json.j2", "systemd/logship.service", ..."""
    return _here().joinpath(name).read_text(encoding="utf-8")


def format_names() -> list[str]:
    """The shipped formats' file names."""
    folder = _here().joinpath("formats")
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".j2"))


def samples() -> dict[str, str]:
    """The shipped sample messages for `render --sample`: name -> what it shows (from their README's table)."""
    table = shipped("samples/README.md")
    rows = (line.split("|") for line in table.splitlines() if line.startswith("| ") and ".json |" in line)
    return {cells[1].strip().removesuffix(".json"): cells[2].strip() for cells in rows}


def sample(name: str) -> bytes:
    """The body of the shipped sample message called `name`; a LogshipError naming the others when none is."""
    if name not in samples():
        raise LogshipError(f"no sample {name!r} (there are: {', '.join(samples())}; "
                           "`logship render --sample` lists them)")
    return _here().joinpath("samples", f"{name}.json").read_bytes()


@dataclass(frozen=True)
class Written:
    """What `init` wrote, and what is still to do before the config works."""

    files: list[Path]
    todo: list[str]
    said: list[str] = field(default_factory=list)  # what it chose and why (init --from-mailerq)

    def lines(self) -> list[str]:
        """What `init` prints: what it chose, the files, how to use the config, what is left to do."""
        config = self.files[0]
        use = [] if str(config) == DEFAULT_CONFIG else [f"use it with --config {config} or LOGSHIP_CONFIG={config}"]
        return [*self.said, *(f"wrote {path}" for path in self.files), *use, *(f"to do: {step}" for step in self.todo)]


def init(folder: str | os.PathLike[str], force: bool = False) -> Written:
    """Write FOLDER/logship.toml (the production config) and FOLDER/formats/ with the shipped formats.

    Nothing is written when a file exists, unless `force`: a starting point must never
    replace an operator's own config or formats.
    """
    folder = Path(folder).absolute()
    config_text, todo = _config_for(folder)
    return Written(_write(folder, config_text, force), todo)


def init_from_mailerq(mailerq_file: str, folder: str | os.PathLike[str], force: bool = False,
                      version: tuple[int, int] | None = None) -> Written:
    """As `init`, with a [broker] and [[queues]] that take exactly what the MailerQ of `mailerq_file` publishes."""
    from ..config import mailerq
    from . import from_mailerq
    folder = Path(folder).absolute()
    plan = mailerq.plan(mailerq.read(mailerq_file), version)
    password = folder / "broker.password"
    base = shipped("systemd/logship.toml").replace(DEFAULT_DIR, str(folder))
    text = from_mailerq.config_text(base, plan, mailerq_file, password)
    files = _write(folder, text, force)
    said = [*from_mailerq.report(plan, mailerq_file), "logship's RabbitMQ user, as root on a node:",
            *(f"  {line}" for line in from_mailerq.permissions(plan))]
    return Written(files, from_mailerq.todo(plan, files[0], password), said)


def _write(folder: Path, config_text: str, force: bool) -> list[Path]:
    """Write the config and the shipped formats into `folder`; none of it over existing files unless `force`."""
    files = {folder / "logship.toml": config_text}
    files.update({folder / "formats" / name: shipped(f"formats/{name}") for name in format_names()})
    existing = [str(path) for path in files if path.exists()]
    if existing and not force:
        raise LogshipError(f"not overwriting {', '.join(existing)} (--force replaces them)")
    (folder / "formats").mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return list(files)


def _config_for(folder: Path) -> tuple[str, list[str]]:
    """The shipped production config, /etc/logship replaced by `folder`, naming this logship; what is left to do."""
    text = shipped("systemd/logship.toml").replace(DEFAULT_DIR, str(folder)).replace(INSTALLED_BIN, running_command())
    text = text.replace(INSTALLED_DOCS, installed_docs())
    todo = ["set broker.url (user, host, virtual host) and the queues"]
    password = folder / "broker.password"
    if not password.exists():
        # password_file stays set: `check` names it until the file is there, rather than a
        # config that checks but cannot log in (its URL names a user without a password)
        todo.append(f"put the broker password in {password} (one line, mode 0640, group logship)")
    return text, todo


def unit(command: str | None = None) -> str:
    """The shipped systemd unit, its command lines naming `command` and its Documentation= this install's pages."""
    text = shipped("systemd/logship.service").replace(INSTALLED_BIN, command or running_command())
    return text.replace(INSTALLED_DOCS, installed_docs())


def installed_docs() -> str:
    """The folder where pip put README.md and docs/ for the running logship's environment."""
    return str(Path(sys.prefix, "share", "doc", "logship"))


def running_command() -> str:
    """The absolute path of the `logship` command that is running (the install in use)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "logship" and argv0.exists():
        return str(argv0.absolute())
    # run as `python -m logship.cli`: the console script the same environment has
    return str(Path(sys.prefix, "bin", "logship"))
