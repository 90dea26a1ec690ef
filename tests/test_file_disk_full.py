"""A full file system: no torn line, no ack, one log line, and everything once space returns."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from logship.errors import OutputError
from logship.sinks.file.sink import FileSink

from helpers import RunningDaemon, expected_attempts, line_count, publish, queue_depth, traffic, wait_for, write_config
from test_daemon_broker import RECORD_FORMAT

FAILED = "an output failed; not acknowledging until it recovers"
RECOVERED = "outputs recovered; acknowledging again"


def fill(disk: Path, leave: int) -> Path:
    """A filler file taking all but about `leave` bytes of `disk`."""
    filler = disk / "filler"
    stats = os.statvfs(disk)
    size = stats.f_bavail * stats.f_frsize - leave
    with open(filler, "wb") as f:
        f.write(b"\0" * max(size, 0))
    return filler


def test_a_batch_that_does_not_fit_is_cut_back_to_the_last_whole_line(small_disk):
    sink = FileSink("d", str(small_disk / "out.log"))
    sink.write({}, "first")
    sink.flush()
    fill(small_disk, leave=8192)
    for n in range(2000):
        sink.write({}, f"record {n:05d} " + "y" * 50)
    with pytest.raises(OutputError, match="No space left on device"):
        sink.flush()
    assert (small_disk / "out.log").read_bytes() == b"first\n"
    (small_disk / "filler").unlink()
    sink.flush()  # the buffered lines were kept: they go out once there is room
    sink.close()
    lines = (small_disk / "out.log").read_text().splitlines()
    assert lines == ["first"] + [f"record {n:05d} " + "y" * 50 for n in range(2000)]


EFBIG_CHILD = """
import resource, signal, sys
from logship.errors import OutputError
from logship.sinks.file.sink import FileSink
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
sink = FileSink("d", sys.argv[1])
sink.write({}, "first")
sink.flush()
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
for n in range(200):
    sink.write({}, f"record {n:05d} " + "y" * 50)
try:
    sink.flush()
except OutputError as error:
    print(error)
"""


def test_a_file_size_limit_is_an_output_error_and_the_file_is_cut_back(tmp_path):
    output = tmp_path / "out.log"
    done = subprocess.run([sys.executable, "-c", EFBIG_CHILD, str(output)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "write failed: File too large" in done.stdout
    assert output.read_bytes() == b"first\n"


def test_the_daemon_stops_acking_on_a_full_disk_says_so_once_and_resumes_when_space_returns(
        workdir, vhost_url, small_disk):
    events = traffic(3000, seed=5)
    publish(vhost_url, events)
    expected = expected_attempts(events)
    (workdir / "formats" / "trace.j2").write_text(RECORD_FORMAT)
    output = small_disk / "all.jsonl"
    config = write_config(workdir, vhost_url, f"""
[[outputs]]
name = "all"
type = "file"
path = "{output}"

[[routes]]
format = "trace"
output = "all"
""")
    filler = fill(small_disk, leave=300_000)  # room for a few batches, not for all ~5000 records
    with RunningDaemon(config) as daemon:
        wait_for(lambda: FAILED in daemon.messages(), what="the disk-full error")
        stuck = line_count(output)
        subprocess.run(["sleep", "3"])  # several retries with backoff happen meanwhile
        assert 0 < stuck < len(expected) and line_count(output) == stuck
        assert queue_depth(vhost_url, "results") > 0, "the broker should still hold messages"
        assert output.read_bytes().endswith(b"\n"), "a torn line was left behind"
        filler.unlink()
        wait_for(lambda: line_count(output) >= len(expected), what="every record after space returned")
        wait_for(lambda: queue_depth(vhost_url, "results") == 0 and queue_depth(vhost_url, "retry") == 0,
                 what="empty queues")
        assert daemon.stop() == 0
    messages = daemon.messages()
    assert messages.count(FAILED) == 1 and messages.count(RECOVERED) == 1
    failed = next(e for e in daemon.log() if e["message"] == FAILED)
    assert "No space left on device" in failed["error"]
    written = [json.loads(line) for line in output.read_text().splitlines()]
    counts = Counter((r["recipient"], r["attempt"], r["time"]) for r in written)
    assert sorted(counts) == expected, "a record is missing"
    twice = {key for key, n in counts.items() if n > 1}
    redelivered = {(r["recipient"], r["attempt"], r["time"]) for r in written if r["redelivered"]}
    assert twice <= redelivered, "a duplicate that redelivery does not explain"
