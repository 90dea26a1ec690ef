"""A private RabbitMQ node for the test run: Debian's rabbitmq-server on free loopback ports."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pika

from helpers import scaled

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
#: vhosts made per rabbitmqctl call (tests/broker.py RabbitNode.new_vhost): 16 take about 1 s, one 0.6 s
VHOST_BATCH = 16


def free_port() -> int:
    """A loopback TCP port nobody listens on, below the kernel's range of ephemeral ports.

    A server stopped and started again (a broker restart) must get its port back. Inside the
    ephemeral range an outgoing connection, such as the daemon retrying that very port, may
    be given it as its own port meanwhile (and even connect to itself): the restart then
    fails with eaddrinuse. Below the range no connection is handed the port.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(500):
        port = random.randrange(max(1024, low - 12000), low)
        if port in _HANDED_OUT:  # free now, but a node that is stopped or not started yet owns it
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port below the ephemeral range")


_HANDED_OUT: set[int] = set()  # every port free_port() returned in this run: never twice


class RabbitNode:
    """One RabbitMQ node in a temporary folder; start, stop and restart it like a real one."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="logship-rabbit-"))
        self.name = f"logship-test-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = next(port for port in iter(free_port, None) if port != self.port)
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text("loopback_users = none\nlog.console = false\n")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "rabbitmq", "rabbitmq")  # the server drops to this user
        self.env = {**os.environ,
                    "HOME": "/var/lib/rabbitmq" if os.geteuid() == 0 else os.environ.get("HOME", "/tmp"),
                    "RABBITMQ_NODENAME": self.name,
                    "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                    "RABBITMQ_NODE_PORT": str(self.port),
                    "RABBITMQ_DIST_PORT": str(self.dist_port),
                    "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
                    "RABBITMQ_LOG_BASE": str(self.dir / "log"),
                    "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
                    "RABBITMQ_PID_FILE": str(self.dir / "pid")}
        self.process: subprocess.Popen[bytes] | None = None
        self.spare_vhosts: list[str] = []  # made by new_vhost() in a batch, not handed out yet

    @property
    def url(self) -> str:
        """The AMQP URL of the default vhost."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def vhost_url(self, vhost: str) -> str:
        """The AMQP URL of `vhost`."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def start(self, timeout: float = 90) -> None:
        """Start the node and wait until it accepts AMQP connections (`timeout` scaled)."""
        timeout = scaled(timeout)
        # The server's own script, not Debian's /usr/sbin wrapper: that one switches user with su,
        # which starts a new session where stop() could not reach the Erlang VM.
        as_user = {"user": "rabbitmq", "group": "rabbitmq"} if os.geteuid() == 0 else {}
        with open(self.dir / "server.out", "ab") as log:  # the server keeps its own copy of the descriptor
            self.process = subprocess.Popen([SERVER], env=self.env, stdout=log, stderr=log,
                                            start_new_session=True, **as_user)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {(self.dir / 'server.out').read_text()[-2000:]}")
            with socket.socket() as s:  # the listener opens at the end of the boot; pika only then
                if s.connect_ex(("127.0.0.1", self.port)) != 0:  # (each refusal pika logs as an error)
                    time.sleep(0.2)
                    continue
            try:
                pika.BlockingConnection(pika.URLParameters(self.url + "?connection_attempts=1")).close()
                return
            except pika.exceptions.AMQPError:
                time.sleep(0.3)
        raise RuntimeError("rabbitmq-server did not start in time")

    def stop(self) -> None:
        """Stop the node the way an operator would (SIGTERM), waiting until it is gone."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=scaled(60))
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._wait_port_closed()
        self.process = None

    def _wait_port_closed(self) -> None:
        """Wait until the AMQP port is really released (beam may linger a moment, longer on a loaded host)."""
        deadline = time.monotonic() + scaled(10)
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)

    def restart(self) -> None:
        """Stop and start again with the same data: durable queues and persistent messages survive."""
        self.stop()
        self.start()

    def ctl(self, *args: str) -> str:
        """Run rabbitmqctl against this node."""
        return subprocess.run(["rabbitmqctl", "-q", "-n", self.name, *args], env=self.env,
                              check=True, capture_output=True, text=True, timeout=scaled(60)).stdout

    def new_vhost(self) -> str:
        """A fresh virtual host, so each test has queues of its own (never handed out twice).

        Each rabbitmqctl call starts an Erlang VM of its own: about 0.8 s, twice that on a busy
        2-core host, and add_vhost then set_permissions took two per test (some 70 tests). So
        the vhosts are made VHOST_BATCH at a time, with guest's permissions, by one
        import_definitions; a test still gets a vhost nobody has used.
        """
        if not self.spare_vhosts:
            self.spare_vhosts = self.make_vhosts(VHOST_BATCH)
        return self.spare_vhosts.pop(0)

    def make_vhosts(self, count: int) -> list[str]:
        """`count` new virtual hosts where guest may do anything, made by one rabbitmqctl call."""
        vhosts = [f"t{uuid.uuid4().hex[:10]}" for _ in range(count)]
        definitions = {"vhosts": [{"name": vhost} for vhost in vhosts],
                       "permissions": [{"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*",
                                        "read": ".*"} for vhost in vhosts]}
        path = self.dir / f"vhosts-{vhosts[0]}.json"
        path.write_text(json.dumps(definitions))
        path.chmod(0o644)
        try:
            self.ctl("import_definitions", str(path))
        finally:
            path.unlink()
        return vhosts

    def cleanup(self) -> None:
        """Stop the node and remove its folder."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
