"""The systemd notify protocol on a real unix datagram socket, alone and from the running daemon."""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from helpers import RunningDaemon, line_count, publish, wait_for, write_config
from logship.service.notify import Notifier

TRACE = '{{ {"recipient": message.recipient, "attempt": record.attempt_number} | json }}\n'


class NotifyListener:
    """A datagram socket standing in for systemd: every message kept with its arrival time."""

    def __init__(self, address: str) -> None:
        self.address = address  # as NOTIFY_SOCKET spells it
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + address[1:] if address.startswith("@") else address)
        self.socket.settimeout(0.1)
        self.received: list[tuple[float, dict[str, str]]] = []
        self._running = True
        self._thread = threading.Thread(target=self._listen, name="notify-listener")
        self._thread.start()

    def _listen(self) -> None:
        while self._running:
            try:
                data = self.socket.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.received.append((time.monotonic(), fields))

    def with_key(self, key: str) -> list[tuple[float, dict[str, str]]]:
        """The messages carrying `key`, in order."""
        return [(at, m) for at, m in list(self.received) if key in m]

    def close(self) -> None:
        self._running = False
        self._thread.join()
        self.socket.close()


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifyListener]:
    """A listener on a plain socket path and on an abstract one."""
    name = str(tmp_path / "notify.sock") if request.param == "path" else f"@logship-test-{uuid.uuid4().hex}"
    listener = NotifyListener(name)
    yield listener
    listener.close()


def test_ready_status_and_stopping_arrive_as_one_datagram_each(listener):
    notifier = Notifier({"NOTIFY_SOCKET": listener.address})
    assert notifier.ready("consuming 2 queues")
    assert notifier.stopping()
    wait_for(lambda: len(listener.received) == 2, timeout=5, what="two datagrams")
    notifier.close()
    assert listener.received[0][1] == {"READY": "1", "STATUS": "consuming 2 queues"}
    assert listener.received[1][1] == {"STOPPING": "1"}


def test_reloading_carries_the_monotonic_clock_in_microseconds(listener):
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier({"NOTIFY_SOCKET": listener.address}).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    wait_for(lambda: listener.received, timeout=5, what="the datagram")
    message = listener.received[0][1]
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after


def test_a_status_is_one_line_and_sent_only_when_it_changes(listener):
    notifier = Notifier({"NOTIFY_SOCKET": listener.address})
    assert notifier.status("first\nsecond")
    assert not notifier.status("first\nsecond")
    wait_for(lambda: listener.received, timeout=5, what="the datagram")
    time.sleep(0.2)
    assert [m for _at, m in listener.received] == [{"STATUS": "first second"}]


def test_watchdog_pings_at_half_the_interval_only_for_the_named_pid(listener):
    env = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "10000000"}
    notifier = Notifier({**env, "WATCHDOG_PID": str(os.getpid())})
    assert notifier.watchdog_interval == 10.0
    assert [notifier.watchdog(now) for now in (100.0, 104.9, 105.0, 109.0, 110.0)] == [True, False, True, False, True]
    assert Notifier({**env, "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert not Notifier({**env, "WATCHDOG_PID": "1"}).watchdog()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails(tmp_path):
    assert not Notifier({}).ready()
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}).ready()


def _daemon(workdir: Path, url: str, listener: NotifyListener, watchdog_usec: int = 0,
            output: str = "log/all.jsonl", sync: str = "batch") -> RunningDaemon:
    """The real daemon with NOTIFY_SOCKET (and WATCHDOG_USEC) set, as systemd would start it."""
    (workdir / "formats" / "trace.j2").write_text(TRACE)
    config = write_config(workdir, url, f'[[outputs]]\nname = "all"\ntype = "file"\npath = "{output}"\n'
                          f'sync = "{sync}"\n\n[[routes]]\nformat = "trace"\noutput = "all"\n')
    env = {"NOTIFY_SOCKET": listener.address}
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)  # no WATCHDOG_PID: the child cannot know its pid
    return RunningDaemon(config, env=env)


@pytest.mark.broker
@pytest.mark.parametrize("listener", ["abstract"], indirect=True)
def test_ready_comes_only_once_the_daemon_consumes(workdir, rabbit, listener):
    vhost = f"late{uuid.uuid4().hex[:8]}"  # does not exist yet: the broker refuses the connection
    with _daemon(workdir, rabbit.vhost_url(vhost), listener, watchdog_usec=2_000_000) as daemon:
        wait_for(lambda: "reconnecting to the broker" in daemon.messages(), what="a refused connection")
        time.sleep(1.5)
        assert listener.with_key("READY") == []
        assert listener.with_key("WATCHDOG"), "a daemon retrying the broker is alive: it keeps pinging"
        status = listener.with_key("STATUS")[-1][1]["STATUS"]
        assert status.startswith("connecting to the broker; last error")
        rabbit.ctl("add_vhost", vhost)
        rabbit.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        wait_for(lambda: listener.with_key("READY"), what="READY=1")
        assert "consuming" in daemon.messages()
        assert listener.with_key("READY")[0][1]["STATUS"].startswith("consuming 2 queues, ")
        assert daemon.stop() == 0


@pytest.mark.broker
@pytest.mark.parametrize("listener", ["path"], indirect=True)
def test_watchdog_pings_every_half_interval_and_stop_while_the_process_is_stopped(workdir, vhost_url, listener):
    with _daemon(workdir, vhost_url, listener, watchdog_usec=1_000_000) as daemon:
        wait_for(lambda: listener.with_key("READY"), what="READY=1")
        time.sleep(3)
        pings = [at for at, _m in listener.with_key("WATCHDOG")]
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        # half the interval apart, and always well before systemd's deadline of 1 s
        assert len(gaps) >= 3 and all(0.45 <= gap < 0.95 for gap in gaps), gaps
        daemon.process.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        time.sleep(2)
        resumed_at = time.monotonic()
        daemon.process.send_signal(signal.SIGCONT)
        wait_for(lambda: listener.with_key("WATCHDOG")[-1][0] > resumed_at, timeout=5, what="pings again")
        during = [at for at, _m in listener.with_key("WATCHDOG") if stopped_at + 0.05 < at < resumed_at]
        assert during == []
        assert daemon.stop() == 0


@pytest.mark.broker
@pytest.mark.parametrize("listener", ["abstract"], indirect=True)
def test_a_loop_stuck_in_an_output_stops_the_pings_while_the_process_runs(workdir, vhost_url, listener):
    fifo = workdir / "stuck.fifo"
    os.mkfifo(fifo)  # opening it for writing blocks until a reader comes: the loop hangs in flush()
    sample = (Path(__file__).parent / "samples" / "dns-failure.json").read_text()
    with _daemon(workdir, vhost_url, listener, watchdog_usec=1_000_000, output=str(fifo), sync="never") as daemon:
        wait_for(lambda: listener.with_key("READY") and listener.with_key("WATCHDOG"), what="READY=1, a ping")
        publish(vhost_url, [{"queue": "results", "body": json.loads(sample)}])
        # the batch is due after 50 ms; from then on the loop hangs in open(): the pings stop
        wait_for(lambda: time.monotonic() - listener.with_key("WATCHDOG")[-1][0] > 1.5, timeout=20,
                 what="the pings to stop")
        stuck_from = listener.with_key("WATCHDOG")[-1][0]
        time.sleep(1.5)
        assert daemon.process.poll() is None
        assert [at for at, _m in listener.with_key("WATCHDOG") if at > stuck_from] == []
        with open(fifo, "rb") as reader:  # unblocks the loop
            wait_for(lambda: listener.with_key("WATCHDOG")[-1][0] > stuck_from + 3, timeout=5, what="pings again")
            assert daemon.stop() == 0
            assert b"@" in reader.read()


@pytest.mark.broker
@pytest.mark.parametrize("listener", ["path"], indirect=True)
def test_sighup_sends_reloading_with_the_clock_then_ready(workdir, vhost_url, listener):
    with _daemon(workdir, vhost_url, listener) as daemon:
        wait_for(lambda: listener.with_key("READY"), what="READY=1")
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: len(listener.with_key("READY")) == 2, what="READY=1 after the reload")
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        (reloading_at, reloading), = listener.with_key("RELOADING")
        assert before <= int(reloading["MONOTONIC_USEC"]) <= after
        assert reloading_at <= listener.with_key("READY")[1][0]
        assert "outputs reopened" in daemon.messages()
        assert daemon.stop() == 0


@pytest.mark.broker
@pytest.mark.parametrize("listener", ["abstract"], indirect=True)
def test_sigterm_sends_stopping_before_the_daemon_exits(workdir, vhost_url, listener):
    with _daemon(workdir, vhost_url, listener) as daemon:
        wait_for(lambda: listener.with_key("READY"), what="READY=1")
        assert listener.with_key("STOPPING") == []
        assert daemon.stop() == 0
        wait_for(lambda: listener.with_key("STOPPING"), timeout=5, what="STOPPING=1")
    assert line_count(workdir / "log" / "all.jsonl") == 0
