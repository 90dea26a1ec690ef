"""SIGTERM and SIGINT under load: exit 0 quickly, every written record acked, nothing acked unwritten."""
from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from helpers import (TRACE_OUTPUT, RunningDaemon, expected_attempts, line_count, publish,
                     queue_depth, traffic, wait_for, write_config)

TRACE = ('{{ {"recipient": message.recipient, "attempt": record.attempt_number, "time": attempt.time, '
         '"redelivered": record.redelivered} | json }}\n')
STOP_WITHIN = 5.0  # seconds; the unit allows TimeoutStopSec=30s


def attempts(path: Path) -> Counter[tuple[str, int, str]]:
    """How often each (recipient, attempt, time) is in a trace file."""
    return Counter((r["recipient"], r["attempt"], r["time"])
                   for r in map(json.loads, path.read_text().splitlines()))


def remaining(url: str) -> int:
    """Messages still ready in both queues."""
    return queue_depth(url, "results") + queue_depth(url, "retry")


@pytest.mark.broker
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_mid_stream_acks_exactly_what_was_written(workdir, vhost_url, signum):
    events = traffic(6000, seed=3)
    published = publish(vhost_url, events)
    (workdir / "formats" / "trace.j2").write_text(TRACE)
    config = write_config(workdir, vhost_url, TRACE_OUTPUT)
    # small batches: many acks in flight, so the signal surely lands between write and ack
    config.write_text(config.read_text().replace("prefetch = 1000", "prefetch = 300\nbatch_size = 25"))
    output = workdir / "log" / "all.jsonl"
    with RunningDaemon(config) as first:
        wait_for(lambda: line_count(output) > 1000, what="the first records")
        signalled = time.monotonic()
        first.process.send_signal(signum)
        assert first.process.wait(timeout=30) == 0
        took = time.monotonic() - signalled
    assert took < STOP_WITHIN, f"took {took:.1f}s to stop"
    stopped = next(e for e in first.log() if e["message"] == "stopped")
    assert 0 < stopped["acked"] < published, "the signal did not land mid-stream"
    wait_for(lambda: remaining(vhost_url) == published - stopped["acked"], timeout=10,
             what="the queues to hold exactly what was not acked")
    before = attempts(output)
    output.rename(workdir / "log" / "first.jsonl")
    with RunningDaemon(config) as second:  # consumes what the first one left, into a fresh file
        rest = len(expected_attempts(events)) - sum(before.values())
        wait_for(lambda: line_count(output) >= rest, what="the rest")
        assert second.stop() == 0
    after = attempts(output)
    assert max(before.values()) == 1 and max(after.values()) == 1
    assert not set(before) & set(after), "written by the first run but not acked: redelivered"
    assert sorted(before + after) == expected_attempts(events), "acked by the first run but never written"
