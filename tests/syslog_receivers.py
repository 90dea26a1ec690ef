"""Real rsyslog and syslog-ng for the tests, unpacked by tests/bootstrap.sh, each in a private folder."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from broker import free_port
from helpers import scaled

RECEIVERS = Path(os.environ.get("LOGSHIP_RECEIVERS", "/var/cache/logship-test/receivers"))
LIBRARIES = f"{RECEIVERS}/usr/lib/x86_64-linux-gnu:{RECEIVERS}/lib/x86_64-linux-gnu:{RECEIVERS}/usr/lib/syslog-ng"

# Every field rsyslog parsed, as JSON: what the tests compare with what was sent.
RSYSLOG_TEMPLATE = """
template(name="fields" type="list" option.jsonf="on") {
  property(outname="facility" name="syslogfacility" format="jsonf")
  property(outname="severity" name="syslogseverity" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="input" name="inputname" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="sd" name="$!rfc5424-sd" format="jsonf")
}
module(load="mmpstrucdata")
action(type="mmpstrucdata")
action(type="omfile" file="{out}" template="fields")
"""


def available() -> None:
    """Fail (never skip) when the receivers are not unpacked."""
    for program in ("usr/sbin/rsyslogd", "usr/sbin/syslog-ng"):
        if not (RECEIVERS / program).exists():
            raise AssertionError(f"{RECEIVERS / program} is missing: run the suite with ./tests/run")


class Receiver:
    """A receiver process with its own config, pid file and output file in `folder`."""

    out_name = "received.jsonl"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.out = folder / self.out_name
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        """Start the receiver and wait until it listens."""
        available()
        env = {**os.environ, "LD_LIBRARY_PATH": LIBRARIES}
        self.process = subprocess.Popen(self.command(), env=env, stdout=open(self.folder / "stdout", "ab"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready()

    def wait_ready(self, timeout: float = 15) -> None:
        """Wait for the pid file the receiver writes once its inputs are open (`timeout` scaled)."""
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:  # type: ignore[union-attr]
                raise RuntimeError(f"{self.command()[0]} exited: {(self.folder / 'stdout').read_text()[-2000:]}")
            # the pid file comes a moment before every listener is bound: on a loaded host, more
            # than a moment; a datagram sent before the bind is dropped without a word
            if (self.folder / "pid").exists() and self.listening():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.command()[0]} did not start: {(self.folder / 'stdout').read_text()[-2000:]}")

    def config_text(self) -> str:
        """The receiver's config file (what it listens on is named there)."""
        return ""

    def listening(self) -> bool:
        """Whether every input the config names is bound: the TCP or UDP port, the unix socket."""
        text = self.config_text()
        if str(self.port) in text and not _bound(self.port):
            return False
        socket_path = getattr(self, "socket", None)
        return socket_path is None or str(socket_path) not in text or Path(socket_path).exists()

    def signal(self, signum: int) -> None:
        """Send a signal (SIGSTOP, SIGCONT, ...)."""
        os.kill(self.process.pid, signum)  # type: ignore[union-attr]

    def stop(self) -> None:
        """SIGTERM and wait; the output file is complete afterwards."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        (self.folder / "pid").unlink(missing_ok=True)

    def lines(self) -> list[str]:
        """The lines of the output file so far."""
        try:
            return self.out.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Rsyslog(Receiver):
    """rsyslogd with the given inputs; every message it parsed is a JSON line in `out`."""

    def __init__(self, folder: Path, inputs: str, global_params: str = "") -> None:
        super().__init__(folder)
        self.socket = folder / "log.sock"
        body = inputs.format(port=self.port, socket=self.socket)
        (folder / "rsyslog.conf").write_text(f'global(workDirectory="{folder}" {global_params})\n{body}\n'
                                             + RSYSLOG_TEMPLATE.replace("{out}", str(self.out)))

    def config_text(self) -> str:
        return (self.folder / "rsyslog.conf").read_text()

    def command(self) -> list[str]:
        return [str(RECEIVERS / "usr/sbin/rsyslogd"), "-n", "-f", str(self.folder / "rsyslog.conf"),
                "-i", str(self.folder / "pid"), "-M", str(RECEIVERS / "usr/lib/x86_64-linux-gnu/rsyslog")]

    def received(self) -> list[dict[str, Any]]:
        """What rsyslog parsed, one dict per message (STRUCTURED-DATA as a dict, parsed by mmpstrucdata)."""
        messages = [json.loads(line) for line in self.lines()]
        for message in messages:
            message["sd"] = json.loads(message["sd"]) if message["sd"] else {}
        return messages


class SyslogNg(Receiver):
    """syslog-ng with a syslog() source; its own internal messages go to `internal.log`."""

    out_name = "received.log"

    def __init__(self, folder: Path, transport: str = "tcp") -> None:
        super().__init__(folder)
        self.internal = folder / "internal.log"
        # a big receive buffer: UDP drops what does not fit, and the tests count every message
        (folder / "syslog-ng.conf").write_text(f"""@version: 3.38
options {{ keep-hostname(yes); use-dns(no); dns-cache(no); stats-freq(0); log-msg-size(65536); }};
source s_net {{ syslog(ip("127.0.0.1") port({self.port}) transport("{transport}") so-rcvbuf(4194304)); }};
source s_internal {{ internal(); }};
destination d_out {{ file("{self.out}" template("${{MSGID}} ${{MSG}}\\n")); }};
destination d_internal {{ file("{self.internal}"); }};
log {{ source(s_net); destination(d_out); }};
log {{ source(s_internal); destination(d_internal); }};
""")

    def config_text(self) -> str:
        return (self.folder / "syslog-ng.conf").read_text()

    def command(self) -> list[str]:
        f = self.folder
        return [str(RECEIVERS / "usr/sbin/syslog-ng"), "-F", "--no-caps", "-f", str(f / "syslog-ng.conf"),
                "--persist-file", str(f / "persist"), "--pidfile", str(f / "pid"), "--control", str(f / "ctl"),
                "--module-path", str(RECEIVERS / "usr/lib/syslog-ng/3.38")]

    def errors(self) -> list[str]:
        """syslog-ng's complaints about messages it could not parse (it puts them in place of the MSG)."""
        found = []
        for path in (self.out, self.internal):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            found += [line for line in text.splitlines() if "Error processing log message" in line]
        return found


def _bound(port: int) -> bool:
    """Whether some socket is bound to `port`: listening for TCP, bound for UDP (the kernel's tables)."""
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            rows = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and (table.startswith("udp") or fields[3] == "0A"):
                return True
    return False


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, with openssl; and a CA nobody uses."""
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=logship test {ca}",
            "-keyout", f"{ca}.key", "-out", f"{ca}.pem")
    (folder / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who, subject in (("server", "/CN=localhost"), ("client", "/CN=logship client")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", f"{who}.key", "-out", f"{who}.csr")
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{who}.ext", "-out", f"{who}.pem")
    return {"ca": folder / "ca.pem", "other-ca": folder / "other-ca.pem",
            "server": folder / "server.pem", "server-key": folder / "server.key",
            "client": folder / "client.pem", "client-key": folder / "client.key"}
