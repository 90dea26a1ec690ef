"""The fault suite's one oracle, and the run of a scenario around it: daemon, traffic, fault, recovery."""
from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from broker import RabbitNode
from feed import FEED_NAME, QUEUES, Feed, expected, numbered_traffic
from figures import Figures, record
from helpers import TRACE_OUTPUT, RunningDaemon, queue_depth, wait_for, write_config

#: one JSON line per record: the e-mail's number, the attempt, and whether RabbitMQ redelivered it
TRACE = ('{{ {"n": message.n, "attempt": record.attempt_number, "redelivered": record.redelivered, '
         '"queue": record.queue} | json }}\n')
#: the broker settings of every scenario: small batches, each synced, so deliveries are in hand
#: (written or not, unacked) whenever the fault strikes; a short reconnect backoff
BROKER = "prefetch = 200\nbatch_size = 20\nreconnect_max = 2\nheartbeat = {heartbeat}"


@dataclass
class Outcome:
    """What the outputs hold, read back: the records and what could not be read as one."""

    records: list[dict[str, Any]]
    torn: list[str]


def read_file(path: Path) -> Outcome:
    """The trace lines of a file output; a line that is not a whole record (or lacks its newline) is torn."""
    data = path.read_bytes() if path.exists() else b""
    pieces = data.split(b"\n")
    records, torn = [], []
    for i, piece in enumerate(pieces):
        if i == len(pieces) - 1:
            if piece:
                torn.append(piece.decode(errors="replace"))  # the file does not end with a newline
            break
        try:
            value = json.loads(piece)
            assert isinstance(value, dict) and {"n", "attempt", "redelivered"} <= value.keys()
            records.append(value)
        except (ValueError, AssertionError):
            torn.append(piece.decode(errors="replace"))
    return Outcome(records, torn)


class FaultRun:
    """One scenario: a daemon consuming numbered traffic while a fault happens, then the oracle."""

    def __init__(self, name: str, folder: Path, rabbit: RabbitNode, vhost: str, order: int = 0) -> None:
        self.name, self.folder, self.rabbit, self.vhost, self.order = name, folder, rabbit, vhost, order
        self.url = rabbit.vhost_url(vhost)
        self.output = folder / "log" / "all.jsonl"
        self.read: Callable[[], Outcome] = lambda: read_file(self.output)
        self.events: list[dict[str, Any]] = []
        self.feed: Feed | None = None
        self.faults = 0
        self.fault_name = ""
        self.healed_at: float | None = None
        self.recover_s: float | None = None
        self.exits = "still running; 0 on SIGTERM"
        self.running: RunningDaemon | None = None  # the daemon started last

    def config(self, url: str | None = None, heartbeat: int = 10, outputs: str = TRACE_OUTPUT) -> Path:
        """A config tracing every record to log/all.jsonl (or `outputs`), consuming results and retry."""
        (self.folder / "formats" / "trace.j2").write_text(TRACE)
        config = write_config(self.folder, url or self.url, outputs)
        config.write_text(config.read_text().replace("prefetch = 1000", BROKER.format(heartbeat=heartbeat)))
        return config

    def start(self, config: Path, seconds: float = 20, emails: int = 1000, seed: int = 1) -> RunningDaemon:
        """Start the daemon, then traffic lasting about `seconds`; return once the first records are written."""
        daemon = self.daemon(config)
        self.traffic(emails, seed, seconds)
        wait_for(lambda: self.written() > 100, what="the first records")
        return daemon

    def daemon(self, config: Path) -> RunningDaemon:
        """Start a daemon and wait until it consumes."""
        daemon = self.running = RunningDaemon(config)
        wait_for(lambda: "consuming" in daemon.messages() or daemon.process.poll() is not None,
                 what="the daemon consuming")
        assert daemon.process.poll() is None, f"the daemon exited: {daemon.log_path.read_text()[-3000:]}"
        return daemon

    def traffic(self, emails: int, seed: int, seconds: float) -> Feed:
        """Publish `emails` e-mails' numbered messages in the background, directly to the node, over about `seconds`."""
        self.events = numbered_traffic(emails, seed)
        chunks = max(len(self.events) // 50, 1)
        self.feed = Feed(self.url, self.events, chunk=50, pause=seconds / chunks)
        self.feed.start()
        return self.feed

    def written(self) -> int:
        """Records the outputs hold so far (whole ones)."""
        return len(self.read().records)

    @contextmanager
    def fault(self, what: str) -> Iterator[None]:
        """The block is one fault (counted); the path heals when it ends."""
        self.fault_name = self.fault_name or what
        self.faults += 1
        yield
        self.healed_at = time.monotonic()

    def recovered(self, flowing: Callable[[], int] | None = None, timeout: float = 90) -> float:
        """Wait until records flow again after the last fault healed; seconds it took."""
        count = flowing or self.written
        assert self.healed_at is not None, "no fault has healed yet"
        before = count()
        daemons = (self.running,) if self.running else ()
        wait_for(lambda: exited(daemons) or count() > before, timeout=timeout, what="records flowing again after the fault")
        assert not exited(daemons), f"the daemon exited under the fault: {exited(daemons)}"
        self.recover_s = time.monotonic() - self.healed_at
        return self.recover_s

    def finish(self, *daemons: RunningDaemon) -> Figures:
        """The rest of the traffic is published at once, the daemons drain the queues and stop; then the oracle.

        The paced traffic (about `seconds` of it, see start()) is there to go on through the
        fault; once the fault has healed and records flow again, what is left of it is published
        without pauses instead of ending on the clock, which cost each scenario up to 15 s.
        """
        assert self.feed is not None
        self.feed.hurry()
        published = self.feed.finish()
        want = expected(self.events)
        wait_for(lambda: exited(daemons) or sum(queue_depth(self.url, q) for q in QUEUES) == 0, timeout=120,
                 what="no ready messages")
        assert not exited(daemons), f"the daemon exited: {exited(daemons)}"
        wait_for(lambda: self.unsettled() == 0, timeout=60, what="nothing left unacknowledged")
        # Acked means held by the outputs; a receiver may still be writing what it was sent. What
        # is missing once this wait is over is missing for good: the oracle says which.
        try:
            wait_for(lambda: len({(r["n"], r["attempt"]) for r in self.read().records}) >= len(want),
                     timeout=10, what=f"all {len(want)} attempts written")
        except AssertionError:
            pass
        assert not exited(daemons), f"the daemon exited: {exited(daemons)}"
        for daemon in daemons:
            assert daemon.stop() == 0
        return self.judge(published, want)

    def unsettled(self) -> int:
        """Messages in results and retry, ready or delivered and not yet acknowledged."""
        rows = json.loads(self.rabbit.ctl("list_queues", "-p", self.vhost, "name", "messages", "--formatter", "json"))
        return sum(row["messages"] for row in rows if row["name"] in QUEUES)

    def judge(self, published: int, want: set[tuple[int, int]]) -> Figures:
        """The oracle: every attempt written; twice only where RabbitMQ redelivered; no torn line; queues empty."""
        outcome = self.read()
        counts = Counter((r["n"], r["attempt"]) for r in outcome.records)
        redelivered = {(r["n"], r["attempt"]) for r in outcome.records if r["redelivered"]}
        assert self.feed is not None
        republished = {key for key in counts if key[0] in self.feed.maybe_twice}
        twice = {key for key, n in counts.items() if n > 1}
        lost = want - set(counts)
        figures = Figures(self.name, self.fault_name, published, len(want), self.faults, len(lost),
                          sum(counts.values()) - len(counts), len(outcome.torn),
                          None if self.recover_s is None else round(self.recover_s, 1), self.exits,
                          order=self.order)
        record(figures)
        assert not outcome.torn, f"torn lines: {outcome.torn[:3]}"
        assert not lost, f"{len(lost)} attempts never written, e.g. {sorted(lost)[:5]}"
        assert set(counts) <= want, f"records of attempts never sent: {sorted(set(counts) - want)[:5]}"
        unexplained = twice - redelivered - republished
        assert not unexplained, f"written twice but never redelivered: {sorted(unexplained)[:5]}"
        assert sum(queue_depth(self.url, q) for q in QUEUES) == 0, "the daemons stopped, and messages came back"
        figures.held = True
        return figures

    def abandon(self) -> None:
        """Stop the traffic (a scenario that failed midway)."""
        if self.feed is not None and self.feed.is_alive():
            self.feed.abandon()


def exited(daemons: tuple[RunningDaemon, ...]) -> str:
    """The end of the log of a daemon that exited (a crash under the fault), else ''."""
    for daemon in daemons:
        if daemon.process.poll() is not None:
            return f"code {daemon.process.returncode}: {daemon.log_path.read_text()[-3000:]}"
    return ""


def daemon_connections(rabbit: RabbitNode, vhost: str) -> list[str]:
    """The pids (as rabbitmqctl close_connection takes them) of the connections to `vhost` but the publisher's: the daemon's."""
    # the table, not JSON: the JSON formatter writes a pid in a form close_connection does not take
    rows = [line.split("\t") for line in rabbit.ctl("-s", "list_connections", "pid", "vhost", "client_properties").splitlines()]
    return [row[0] for row in rows if len(row) > 2 and row[1] == vhost and FEED_NAME not in row[2]]


def pause_for(seconds: float) -> None:
    """Let a fault last `seconds` (a duration of the fault itself, not a wait for a condition: not scaled)."""
    time.sleep(seconds)

