"""The pieces of a benchmark round: corpus, broker, contenders, and the output check."""
from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import pika

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
PYTHON = sys.executable
LOGSHIP = str(Path(PYTHON).parent / "logship")
_PEER_SECONDS = re.compile(r" in ([0-9.]+)s ")


class BenchError(Exception):
    """A round that cannot be counted: wrong output, a contender failed, a timeout."""


def corpus(workdir: Path, messages: int) -> Path:
    """The corpus file for `messages`, generated once per work folder."""
    path = workdir / f"corpus-{messages}.jsonl"
    if not path.exists():
        partial = path.with_suffix(".partial")
        with open(partial, "wb") as out:
            subprocess.run([PYTHON, PEERS / "mailerq_results.py", str(messages), "--bodies-only",
                            "--queue", "results"], stdout=out, check=True)
        partial.rename(path)
    return path


def records(path: Path) -> collections.Counter[bytes]:
    """The JSON objects of a JSON-lines file as a multiset; key order and spacing ignored."""
    with open(path, "rb") as f:
        return collections.Counter(orjson.dumps(orjson.loads(line), option=orjson.OPT_SORT_KEYS)
                                   for line in f if line.strip())


def check_same(path: Path, reference: collections.Counter[bytes], who: str) -> None:
    """Raise BenchError unless `path` holds exactly the reference records."""
    got = records(path)
    if got != reference:
        missing, extra = sum((reference - got).values()), sum((got - reference).values())
        raise BenchError(f"{who}: output is not the reference records ({missing} missing, {extra} unexpected)")


def run(command: list[str], stdout_path: Path | None = None) -> tuple[float, float, str]:
    """Run a command to its end: wall seconds (start-up included), CPU seconds, its stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        target = open(stdout_path, "wb") if stdout_path else out
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=target, stderr=err)
        _pid, status, usage = os.wait4(process.pid, 0)
        if stdout_path:
            target.close()
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        text = out.read().decode()
        if process.returncode != 0:
            raise BenchError(f"{' '.join(command[:3])} failed: {(text + err.read().decode())[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, text


def peer(command: list[str]) -> tuple[float, float]:
    """Run a peer consumer: the seconds it reports (its clock starts at the first delivery), CPU seconds."""
    _wall, cpu, text = run(command)
    match = _PEER_SECONDS.search(text)
    if not match:
        raise BenchError(f"peer {command[2]} said: {text[-300:]}")
    return float(match.group(1)), cpu


class Broker:
    """The queue the end-to-end rounds consume, on the broker at `url`."""

    def __init__(self, url: str, queue: str) -> None:
        self.url, self.queue = url, queue

    def _channel(self) -> tuple[pika.BlockingConnection, object]:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        return connection, connection.channel()

    def purge(self) -> None:
        """Declare the queue (durable) and empty it."""
        connection, channel = self._channel()
        channel.queue_declare(self.queue, durable=True)
        channel.queue_purge(self.queue)
        connection.close()

    def depth(self) -> int:
        """Messages ready in the queue (unacknowledged ones of a closed consumer count again)."""
        connection, channel = self._channel()
        depth = channel.queue_declare(self.queue, durable=True, passive=True).method.message_count
        connection.close()
        return depth

    def load(self, corpus: Path) -> None:
        """Purge, then load the whole corpus with the peers' loader (not timed)."""
        self.purge()
        subprocess.run([PYTHON, PEERS / "load_queue.py", self.url, self.queue, str(corpus)],
                       check=True, stdout=subprocess.DEVNULL)

    def version(self) -> str:
        """The broker's product and version, from the connection handshake."""
        connection, _channel = self._channel()
        props = connection._impl.server_properties  # pika keeps them on the connection
        connection.close()
        return f"{props.get('product', '?')} {props.get('version', '?')}"


class Daemon:
    """`logship run` as a child process, watched through its own log, stopped with SIGTERM."""

    def __init__(self, config: Path) -> None:
        self.process = subprocess.Popen([LOGSHIP, "run", "-c", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.consuming_at: float | None = None
        self._consuming = threading.Event()
        self.log: list[bytes] = []
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        for line in self.process.stderr:  # type: ignore[union-attr]
            if self.consuming_at is None and b'"consuming"' in line:
                self.consuming_at = time.perf_counter()
                self._consuming.set()
            self.log.append(line)

    def wait_consuming(self, timeout: float = 30) -> float:
        """The perf_counter time at which the daemon logged `consuming`."""
        if not self._consuming.wait(timeout):
            self.stop()
            raise BenchError("logship did not start consuming: " + b"".join(self.log[-5:]).decode())
        return self.consuming_at  # type: ignore[return-value]

    def alive(self) -> bool:
        """Whether the daemon still runs (without reaping it: stop() wants its CPU time)."""
        return os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None

    def peak_rss_mib(self) -> float:
        """The high-water mark of the daemon's resident memory (VmHWM), MiB."""
        with open(f"/proc/{self.process.pid}/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        return kib / 1024

    def stop(self) -> float:
        """SIGTERM and wait: the CPU seconds it used; a daemon that does not exit cleanly fails the round."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        _pid, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        if self.process.returncode != 0:
            raise BenchError(f"logship exited with {self.process.returncode}: "
                             + b"".join(self.log[-5:]).decode())
        return usage.ru_utime + usage.ru_stime


class Tail:
    """What is appended to a file, read as it arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: object = None
        self._rest = b""

    def _read(self) -> bytes:
        if self._file is None:
            try:
                self._file = open(self.path, "rb")
            except FileNotFoundError:
                return b""
        return self._file.read()  # type: ignore[attr-defined]

    def count(self) -> int:
        """How many new lines there are."""
        return self._read().count(b"\n")

    def lines(self) -> list[bytes]:
        """The new whole lines."""
        *lines, self._rest = (self._rest + self._read()).split(b"\n")
        return lines
