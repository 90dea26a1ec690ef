"""Helpers for tests: configs, traffic, a running daemon."""
from __future__ import annotations

import functools
import gc
import importlib.util
import json
import marshal
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pika
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "bench" / "peers" / "mailerq_results.py"  # the team's traffic generator

#: Every deadline in the suite is multiplied by this. A deadline only ends a wait that failed
#: (waits poll a condition and return as soon as it holds), so a generous one costs nothing
#: on a fast host; the default is sized for a 2-core machine with another process keeping a
#: core busy, where a RabbitMQ cluster or a daemon under load runs several times slower.
TIMEOUT_SCALE = float(os.environ.get("LOGSHIP_TEST_TIMEOUT_SCALE", "3"))


def scaled(seconds: float) -> float:
    """`seconds` of a fast, idle host as a deadline for this one."""
    return seconds * TIMEOUT_SCALE

#: config tables for one file output, log/all.jsonl, written by the format `trace`
TRACE_OUTPUT = """
[[outputs]]
name = "all"
type = "file"
path = "log/all.jsonl"

[[routes]]
format = "trace"
output = "all"
"""


def write_config(folder: Path, url: str, body: str, queues: tuple[str, ...] = ("results", "retry")) -> Path:
    """A config file in `folder` with `url`, the queues and `body` (outputs, routes, ...)."""
    head = f'[broker]\nurl = "{url}"\nprefetch = 1000\n\n'
    head += "".join(f'[[queues]]\nname = "{q}"\ndeclare = true\n' for q in queues)
    path = folder / "logship.toml"
    path.write_text(head + "\n" + body)
    return path


def traffic(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """Generated MailerQ traffic: {"queue", "body"} events for `n` e-mails.

    The generator's own loop (its main() without the JSON lines), run in this process: through
    its command line and back from JSON, 35,000 e-mails took 6-10 s, in here 2.7 s. Each event
    is a deep copy, as JSON would have given (the generator shares parts between one e-mail's
    messages). tests/test_cli.py checks that this is what the command line prints.
    """
    generator = _generator()
    rng = random.Random(seed)
    events = [{"queue": queue, "body": body} for i in range(n) for queue, body in generator.email(rng, i)]
    # marshal format 2 keeps no references: every dict and list comes back a copy of its own
    collecting = gc.isenabled()
    gc.disable()  # millions of small dicts and lists, none in a cycle: the collector's passes cost seconds
    try:
        return marshal.loads(marshal.dumps(events, 2))
    finally:
        if collecting:
            gc.enable()


@functools.cache
def _generator() -> ModuleType:
    """bench/peers/mailerq_results.py as a module."""
    spec = importlib.util.spec_from_file_location("mailerq_results", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def publish(url: str, events: list[dict[str, Any]], queues: tuple[str, ...] = ("results", "retry"),
            properties: pika.BasicProperties | None = None) -> int:
    """Publish the events for `queues` (declared durable), persistent; returns how many."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for queue in queues:
        channel.queue_declare(queue, durable=True)
    props = properties or pika.BasicProperties(content_type="application/json", delivery_mode=2)
    sent = 0
    for event in events:
        if event["queue"] in queues:
            body = event["body"] if isinstance(event["body"], bytes) else json.dumps(event["body"]).encode()
            channel.basic_publish("", event["queue"], body, props)
            sent += 1
            if sent % 1000 == 0:
                connection.process_data_events(0)
    connection.close()
    return sent


def queue_depth(url: str, queue: str) -> int:
    """Messages ready in `queue`."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def expected_attempts(events: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """Every attempt of every e-mail once: (recipient, attempt number, time) from final results."""
    return sorted((e["body"]["recipient"], i + 1, a["time"])
                  for e in events if e["queue"] == "results"
                  for i, a in enumerate(e["body"]["results"]))


def logship(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command line to its end (text output unless `stdin` bytes are given)."""
    return subprocess.run([sys.executable, "-m", "logship.cli", *args], cwd=ROOT, capture_output=True,
                          text=stdin is None, input=stdin)


def wait_for(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    """Poll until `condition()` holds or fail after `timeout` seconds of a fast host (scaled)."""
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    if condition():  # a last look: the host may have been too busy to poll in time
        return
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def line_count(path: Path) -> int:
    """Lines in a file, 0 when it does not exist."""
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


class RunningDaemon:
    """`logship run` as a child process, its own log captured."""

    def __init__(self, config: Path, env: dict[str, str] | None = None, command: str | None = None) -> None:
        """`command` is a `logship` executable (an installed one); by default the checkout's, run from it."""
        self.log_path = config.parent / "logship.stderr"
        argv = [command] if command else [sys.executable, "-m", "logship.cli"]
        self.process = subprocess.Popen([*argv, "run", "--config", str(config)],
                                        stderr=open(self.log_path, "wb"), cwd=config.parent if command else ROOT,
                                        env={**os.environ, **(env or {})})

    def log(self) -> list[dict[str, Any]]:
        """The daemon's own log lines, parsed."""
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]

    def messages(self) -> list[str]:
        """The `message` of each own log line."""
        return [entry["message"] for entry in self.log()]

    def signals_handled(self) -> bool:
        """Whether SIGUSR1 and SIGHUP no longer kill the process (ignored or caught, per /proc)."""
        fields = dict(line.split(":\t", 1) for line in
                      Path(f"/proc/{self.process.pid}/status").read_text().splitlines() if ":\t" in line)
        handled = int(fields.get("SigIgn", "0"), 16) | int(fields.get("SigCgt", "0"), 16)
        wanted = (1 << (signal.SIGUSR1 - 1)) | (1 << (signal.SIGHUP - 1))
        return handled & wanted == wanted

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait (`timeout` scaled); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=scaled(timeout))

    def __enter__(self) -> RunningDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def promtool() -> str:
    """promtool's path; a failure, not a skip, when it is missing: ./tests/run installs Debian's prometheus for it."""
    import shutil
    path = shutil.which("promtool")
    if path is None:
        import pytest
        pytest.fail("promtool is not installed: ./tests/run installs it (Debian: apt-get install prometheus)")
    return path


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint: (name, sorted labels) -> value."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metrics_url(daemon: RunningDaemon) -> str:
    """The URL the daemon says it serves metrics on (it listens on port 0: a free one)."""
    wait_for(lambda: "metrics listening" in daemon.messages(), timeout=30, what="the metrics server")
    return next(e["url"] for e in daemon.log() if e["message"] == "metrics listening")
