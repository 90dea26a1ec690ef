"""The files a wheel ships beside the code, and `logship init`, which puts them in place.

The checkout's top-level formats/ and systemd/ are symlinks to this package's folders, so
the repository and every wheel hold one copy of them.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import LogshipError

DEFAULT_DIR = "/etc/logship"        # the unit's ConfigurationDirectory=
DEFAULT_CONFIG = f"{DEFAULT_DIR}/logship.toml"
INSTALLED_BIN = "/opt/logship/venv/bin/logship"  # where the shipped unit expects the command


def shipped(name: str) -> str:
    """The text of a shipped file: "formats/json.j2", "systemd/logship.service", ..."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def format_names() -> list[str]:
    """The shipped formats' file names."""
    folder = resources.files(__package__).joinpath("formats")
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".j2"))


@dataclass(frozen=True)
class Written:
    """What `init` wrote, and what is still to do before the config works."""

    files: list[Path]
    todo: list[str]


def init(folder: str | os.PathLike[str], force: bool = False) -> Written:
    """Write FOLDER/logship.toml (the production config) and FOLDER/formats/ with the shipped formats.

    Nothing is written when a file exists, unless `force`: a starting point must never
    replace an operator's own config or formats.
    """
    folder = Path(folder).absolute()
    config_text, todo = _config_for(folder)
    files = {folder / "logship.toml": config_text}
    files.update({folder / "formats" / name: shipped(f"formats/{name}") for name in format_names()})
    existing = [str(path) for path in files if path.exists()]
    if existing and not force:
        raise LogshipError(f"not overwriting {', '.join(existing)} (--force replaces them)")
    (folder / "formats").mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return Written(list(files), todo)


def _config_for(folder: Path) -> tuple[str, list[str]]:
    """The shipped production config, /etc/logship replaced by `folder`, naming this logship; what is left to do."""
    text = shipped("systemd/logship.toml").replace(DEFAULT_DIR, str(folder)).replace(INSTALLED_BIN, running_command())
    todo = ["set broker.url (user, host, virtual host) and the queues"]
    password = folder / "broker.password"
    if not password.exists():
        # password_file stays set: `check` names it until the file is there, rather than a
        # config that checks but cannot log in (its URL names a user without a password)
        todo.append(f"put the broker password in {password} (one line, mode 0640, group logship)")
    return text, todo


def unit(command: str | None = None) -> str:
    """The shipped systemd unit, its ExecStart= and the other command lines naming `command`."""
    return shipped("systemd/logship.service").replace(INSTALLED_BIN, command or running_command())


def running_command() -> str:
    """The absolute path of the `logship` command that is running (the install in use)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "logship" and argv0.exists():
        return str(argv0.absolute())
    # run as `python -m logship.cli`: the console script the same environment has
    return str(Path(sys.prefix, "bin", "logship"))
