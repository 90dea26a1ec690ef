"""`logship replay` as a backfill: every attempt of a file of finals, a summary, --scope, --dry-run, a progress bar."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from collections import Counter
from pathlib import Path

import pytest

from helpers import GENERATOR, ROOT, logship, write_config

EXAMPLE = ROOT / "tests" / "traffic" / "example.toml"
TRACE = '{{ [message.recipient, record.attempt_number, attempt.time] | json }}'
ONE_OUTPUT = '[[outputs]]\nname = "o"\ntype = "file"\npath = "out.log"\n[[routes]]\nformat = "trace"\noutput = "o"\n'


@pytest.fixture(scope="module")
def finals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 e-mails' final result messages, one a line: what a dump of the results queue holds."""
    path = tmp_path_factory.mktemp("traffic") / "finals.jsonl"
    with open(path, "wb") as f:
        subprocess.run([sys.executable, str(GENERATOR), "1500", "--bodies-only", "--queue", "results", "--seed", "17"],
                       check=True, stdout=f)
    return path


def attempts(path: Path) -> Counter[tuple[str, int, str]]:
    """Every attempt in a file of result messages: (recipient, attempt number, time)."""
    return Counter((m["recipient"], i + 1, a["time"]) for m in map(json.loads, path.read_text().splitlines())
                   for i, a in enumerate(m["results"]))


def written(path: Path) -> Counter[tuple[str, int, str]]:
    """The records the trace format wrote."""
    return Counter(tuple(json.loads(line)) for line in path.read_text().splitlines())


def trace_config(workdir: Path) -> Path:
    """A results + retry config (the live scope of results: latest) with one output in the trace format."""
    (workdir / "formats" / "trace.j2").write_text(TRACE)
    return write_config(workdir, "amqp://localhost", ONE_OUTPUT, queues=("results", "retry"))


def test_a_file_of_finals_replayed_with_a_results_and_retry_config_writes_every_attempt_and_says_so(workdir, finals):
    out = logship("replay", "--config", str(trace_config(workdir)), str(finals))
    assert out.returncode == 0, out.stderr
    expected = attempts(finals)
    assert sum(expected.values()) > 1500 * 1.2, "the traffic should hold retried e-mails"
    assert written(workdir / "out.log") == expected
    summary = out.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"replayed 1500 messages, 0 quarantined to \S+; wrote records: {sum(expected.values())} to o; "
                        r"\d+\.\d s; plain lines read as from results, scope all \(every attempt\)", summary), summary


def test_scope_latest_given_on_the_command_line_writes_the_newest_attempt_only(workdir, finals):
    out = logship("replay", "--config", str(trace_config(workdir)), "--scope", "latest", str(finals))
    assert out.returncode == 0, out.stderr
    lines = written(workdir / "out.log")
    assert sum(lines.values()) == 1500 and max(n for (_r, n, _t) in lines) > 1
    assert "1500 to o" in out.stderr and "scope latest (the newest attempt)" in out.stderr


def test_lines_that_name_their_queue_keep_its_scope_so_full_traffic_writes_each_attempt_once(workdir):
    events = subprocess.run([sys.executable, str(GENERATOR), "400", "--seed", "3"], check=True,
                            capture_output=True).stdout
    kept = b"".join(line + b"\n" for line in events.splitlines() if json.loads(line)["queue"] in ("results", "retry"))
    out = logship("replay", "--config", str(trace_config(workdir)), "-", stdin=kept)
    assert out.returncode == 0, out.stderr
    finals = [json.loads(line)["body"] for line in kept.splitlines() if json.loads(line)["queue"] == "results"]
    expected = Counter((m["recipient"], i + 1, a["time"]) for m in finals for i, a in enumerate(m["results"]))
    assert written(workdir / "out.log") == expected  # retry wrote the earlier attempts, results the last
    assert b"plain lines" not in out.stderr


def test_a_dry_run_counts_records_per_output_and_quarantines_but_writes_nothing(workdir):
    config = workdir / "logship.toml"
    config.write_text(EXAMPLE.read_text())
    samples = sorted((ROOT / "tests" / "samples").glob("*.json"))
    lines = b"".join(p.read_bytes().replace(b"\n", b"") + b"\n" for p in samples)
    lines += (ROOT / "tests/samples/not-json.txt").read_bytes()
    dry = logship("replay", "--config", str(config), "--dry-run", "-", stdin=lines)
    assert dry.returncode == 0, dry.stderr
    assert not (workdir / "log").exists() and not (workdir / "quarantine").exists()
    summary = dry.stderr.decode().strip().splitlines()[-1]
    assert summary.endswith("; dry run: nothing written") and "would write records:" in summary
    real = logship("replay", "--config", str(config), "-", stdin=lines)
    assert real.returncode == 0, real.stderr
    deliveries = len((workdir / "log" / "deliveries.log").read_text().splitlines())
    bounces = len((workdir / "log" / "bounces.jsonl").read_text().splitlines())
    quarantined = len((workdir / "quarantine" / "quarantine.jsonl").read_text().splitlines())
    assert f"replayed 11 messages, {quarantined} quarantined to " in summary and quarantined == 2
    assert f"would write records: {deliveries} to deliveries, {bounces} to bounces;" in summary
    assert comparable(real.stderr.decode().strip().splitlines()[-1]) == comparable(summary)


def comparable(summary: str) -> str:
    """A summary line without its time and its dry-run wording."""
    summary = summary.removesuffix("; dry run: nothing written").replace("would write", "wrote")
    return re.sub(r"\d+\.\d s", "T s", summary)


def run_on_a_terminal(args: list[str]) -> tuple[int, bytes]:
    """Run the command line with stderr on a pseudo-terminal; its exit status and what the terminal showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    process = subprocess.Popen([sys.executable, "-m", "logship.cli", *args], cwd=ROOT, stderr=slave,
                               stdout=subprocess.DEVNULL)
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        try:
            chunk = os.read(master, 65536) if ready else b""
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return process.wait(timeout=60), shown


def test_a_progress_bar_shows_on_a_terminal_and_never_in_a_pipe(workdir, finals):
    config = trace_config(workdir)
    status, shown = run_on_a_terminal(["replay", "--config", str(config), str(finals)])
    assert status == 0, shown
    assert b"replay:" in shown and b"B/s" in shown and b"\r" in shown, shown
    assert b"replayed 1500 messages, 0 quarantined" in shown
    piped = logship("replay", "--config", str(config), str(finals))
    assert "\r" not in piped.stderr and "B/s" not in piped.stderr


def test_a_quarantine_line_that_fails_again_is_kept_with_its_queue_and_routing_key(workdir):
    config = workdir / "logship.toml"
    config.write_text(EXAMPLE.read_text())
    entry = {"quarantined": "2026-12-02T12:00:00.000Z", "reason": "not JSON", "queue": "results",
             "routing_key": "results", "redelivered": False, "content_encoding": None, "body": "{not json"}
    kept = workdir / "kept.jsonl"
    kept.write_text(json.dumps(entry) + "\n")
    out = logship("replay", "--config", str(config), str(kept))
    assert out.returncode == 0, out.stderr
    (again,) = map(json.loads, (workdir / "quarantine" / "quarantine.jsonl").read_text().splitlines())
    assert (again["queue"], again["routing_key"], again["body"]) == ("results", "results", "{not json")


def test_a_replay_syncs_each_file_once_at_its_end_not_at_every_flush(workdir, finals, monkeypatch):
    from logship import replay
    from logship.pipeline import Pipeline
    from logship.settings import load
    config = load(trace_config(workdir), broker=False)
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    monkeypatch.setattr(replay, "FLUSH_EVERY", 400)  # three flushes along the way, one at the end
    pipeline = Pipeline.build(config)
    flushes = []
    monkeypatch.setattr(pipeline, "flush", lambda flush=pipeline.flush: (flushes.append(len(synced)), flush())[1])
    try:
        summary = replay.Replay(config, pipeline, None).run(replay.lines(str(finals), replay.PlainQueue("results")))
    finally:
        pipeline.close()
    assert summary.messages == 1500 and flushes == [0, 0, 0, 0]  # nothing synced before the last flush
    assert len(synced) == 1  # out.log, once; the quarantine was never written
    assert written(workdir / "out.log") == attempts(finals)
    assert pipeline.sinks["o"].sync == "batch"  # as configured again, for whatever flushes next
