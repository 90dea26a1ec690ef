"""A throwaway host for the install walk-through: install.md's shell lines, run in a prefix as a real service user."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

from helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "docs" / "install.md"
OPERATIONS = ROOT / "docs" / "operations.md"
# The absolute paths the docs use, each moved into the prefix (longest first: /etc/logship before /etc)
MOVED = ("/opt/logship", "/etc/logship", "/etc/systemd/system", "/etc/logrotate.d", "/var/log/logship",
         "/var/lib/logship")
# `logship` as the user or group name, not as part of a path, a file name or a command's path
USER_WORD = re.compile(r"(?<![/\w.-])logship(?![/\w.-])")


def blocks(text: str) -> list[str]:
    """The fenced shell blocks of a Markdown text, dedented, continuation lines joined."""
    found = re.findall(r"^( *)```sh\n(.*?)^ *```", text, flags=re.S | re.M)
    return [re.sub(r"\\\n\s*", "", re.sub(rf"(?m)^{indent}", "", body)) for indent, body in found]


def step(number: int) -> str:
    """The text of install.md's numbered step `number` under "The host"."""
    host = INSTALL.read_text().split("\n## The host\n", 1)[1].split("\n## ", 1)[0]
    return re.split(r"(?m)^(?=\d\. )", host)[number]


def section(page: Path, heading: str) -> str:
    """The text of one `## heading` section of a page."""
    return page.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


class Host:
    """A prefix standing in for /, a service user standing in for `logship`, and the daemon the unit would run."""

    def __init__(self) -> None:
        self.prefix = Path(tempfile.mkdtemp(prefix="logship-host-", dir="/tmp"))
        self.prefix.chmod(0o755)  # the service user must reach the venv and its folders
        self.user = f"lsw{uuid.uuid4().hex[:8]}"  # a system user of this run only
        self.runuser: subprocess.Popen[bytes] | None = None
        self.pid = 0  # the daemon's own pid (runuser's child)
        self.log = self.prefix / "daemon.stderr"
        (self.prefix / "etc" / "systemd" / "system").mkdir(parents=True)
        (self.prefix / "etc" / "logrotate.d").mkdir(parents=True)

    def path(self, absolute: str) -> Path:
        """Where an absolute path of the docs is in the prefix."""
        return Path(self.moved(absolute))

    def moved(self, text: str) -> str:
        """`text` with the docs' absolute paths moved into the prefix."""
        for path in MOVED:
            text = re.sub(rf"(?<![\w/]){re.escape(path)}(?=[/\s'\"]|$)", f"{self.prefix}{path}", text, flags=re.M)
        return text

    def rewrite(self, line: str) -> str:
        """A docs shell line for this host: paths in the prefix, the service user's name for `logship`."""
        return USER_WORD.sub(self.user, self.moved(line))

    def sh(self, line: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run one rewritten docs line with bash as root; fail with its output unless it exits 0."""
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", self.rewrite(line)], cwd=cwd or self.prefix,
                              input=stdin, capture_output=True, text=True, env=clean_env(), timeout=600)
        assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
        return done

    def follow(self, block: str, stand_ins: dict[str, Callable[[str], None]],
               stdin: str | None = None) -> list[subprocess.CompletedProcess[str]]:
        """Run a docs block line by line, a stand-in for each line that starts with its key; what the lines printed."""
        ran, cwd = [], None
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()  # a trailing comment says what to expect
            if not line:
                continue
            if line.startswith("cd "):
                cwd = self.path(line[3:])
                continue
            stand_in = next((f for key, f in stand_ins.items() if line.startswith(key)), None)
            if stand_in is not None:
                stand_in(line)
                continue
            assert not line.startswith(("systemctl", "journalctl")), f"no stand-in for {line!r}"
            ran.append(self.sh(line, cwd, stdin))
        return ran

    def on_broker(self, rabbit: Any, block: str, vhost: str, stdin: str | None = None) -> None:
        """Run a broker-side block whole (it sets VHOST) with bash, its rabbitmqctl aimed at the test node."""
        script = self.rewrite(block).replace("VHOST=/\n", f"VHOST={vhost}\n", 1)
        assert f"VHOST={vhost}\n" in script, "the block no longer sets VHOST"
        prelude = f'rabbitmqctl() {{ command rabbitmqctl -q -n "{rabbit.name}" "$@"; }}\nset -euo pipefail\n'
        done = subprocess.run(["bash", "-c", prelude + script], env=rabbit.env, input=stdin, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"{script}\n{done.stdout}{done.stderr}"

    def start(self, exec_start: str) -> None:
        """Run the unit's ExecStart= as its User=, with what its [Service] section gives it."""
        for folder in ("/var/log/logship", "/var/lib/logship"):  # LogsDirectory=, StateDirectory= (0750)
            subprocess.run(["install", "-d", "-m", "0750", "-o", self.user, "-g", self.user, self.path(folder)],
                           check=True)
        argv = self.moved(exec_start).split()
        self.runuser = subprocess.Popen(["runuser", "-u", self.user, "--", *argv], cwd=self.path("/var/lib/logship"),
                                        stderr=open(self.log, "wb"), env=clean_env(),
                                        preexec_fn=lambda: os.umask(0o027))  # UMask=0027
        children = Path(f"/proc/{self.runuser.pid}/task/{self.runuser.pid}/children")  # runuser forks the command
        wait_for(lambda: self.runuser.poll() is None and children.read_text().strip() != "", timeout=120,
                 what="the daemon under runuser")
        self.pid = int(children.read_text().split()[0])

    def messages(self) -> list[str]:
        """The daemon's own log, one message a line."""
        return re.findall(r'"message": ?"([^"]*)"', self.log.read_text())

    def running(self) -> bool:
        """Whether the daemon runs (for wait_for: fail at once with its log if it exited)."""
        assert self.runuser is not None and self.runuser.poll() is None, self.log.read_text()[-3000:]
        return True

    def stop(self) -> int:
        """SIGTERM to the daemon, as systemctl stop sends; runuser's exit status (the daemon's)."""
        assert self.runuser is not None
        os.kill(self.pid, signal.SIGTERM)
        return self.runuser.wait(timeout=120)

    def cleanup(self) -> None:
        """Stop anything left, remove the user and the prefix."""
        if self.runuser is not None and self.runuser.poll() is None:
            self.runuser.kill()
            if self.pid:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.runuser.wait()
        subprocess.run(["userdel", self.user], capture_output=True)
        subprocess.run(["groupdel", self.user], capture_output=True)  # when userdel left the group
        shutil.rmtree(self.prefix, ignore_errors=True)


def clean_env() -> dict[str, str]:
    """A service's environment: nothing that points at the checkout, its venv or a config."""
    keep = ("PATH", "LANG", "LC_ALL", "TERM")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def mode(path: Path) -> tuple[int, str]:
    """A file's permission bits and owner's name."""
    import pwd
    stat = path.stat()
    return stat.st_mode & 0o777, pwd.getpwuid(stat.st_uid).pw_name
