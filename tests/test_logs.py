"""The daemon's own log: UTC times, and journald's priority prefix when stderr is the journal."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from helpers import ROOT, RunningDaemon, wait_for, write_config

LOG_EVERY_LEVEL = ("from logship.service import logs; log = logs.setup('debug'); "
                   "log.debug('d'); log.info('i'); log.warning('w'); log.error('e'); log.critical('c')")
PREFIXED = re.compile(rb"<(\d)>(\{.*\})")


def journal_stream(path: Path) -> str:
    """What systemd puts in JOURNAL_STREAM for a stderr connected to `path`: device:inode."""
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def log_every_level(stderr: Path, env: dict[str, str]) -> list[bytes]:
    """Run a program that logs once at each level, its stderr going to `stderr`; its lines."""
    with open(stderr, "wb") as f:
        environ = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
        subprocess.run([sys.executable, "-c", LOG_EVERY_LEVEL], stderr=f, check=True, cwd=ROOT,
                       env={**environ, **env})
    return stderr.read_bytes().splitlines()


def test_every_line_carries_its_syslog_priority_when_stderr_is_the_journal(tmp_path):
    stderr = tmp_path / "stderr"
    stderr.touch()
    lines = log_every_level(stderr, {"JOURNAL_STREAM": journal_stream(stderr)})
    matches = [PREFIXED.fullmatch(line) for line in lines]
    assert all(matches), lines
    assert [(int(m[1]), json.loads(m[2])["level"]) for m in matches] == [
        (7, "DEBUG"), (6, "INFO"), (4, "WARNING"), (3, "ERROR"), (2, "CRITICAL")]


def test_lines_are_plain_json_when_stderr_is_not_the_journal_stream_named(tmp_path):
    stderr, other = tmp_path / "stderr", tmp_path / "other"
    other.touch()  # JOURNAL_STREAM inherited from a unit, stderr redirected elsewhere
    for env in ({}, {"JOURNAL_STREAM": journal_stream(other)}, {"JOURNAL_STREAM": "garbage"}):
        lines = log_every_level(stderr, env)
        assert [json.loads(line)["level"] for line in lines] == ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def test_times_are_utc_iso_8601_with_milliseconds_whatever_the_local_zone(tmp_path):
    before = datetime.now(timezone.utc)
    lines = log_every_level(tmp_path / "stderr", {"TZ": "America/New_York"})
    after = datetime.now(timezone.utc)
    for line in lines:
        stamp = json.loads(line)["time"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp), stamp
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert before - timedelta(milliseconds=1) <= at <= after


def test_the_daemons_warnings_reach_the_journal_at_warning_priority(workdir):
    config = write_config(workdir, "amqp://127.0.0.1:1/", '[[outputs]]\nname = "all"\ntype = "file"\n'
                          'path = "all.log"\n[[routes]]\nformat = "json"\noutput = "all"\n')
    stderr = workdir / "logship.stderr"  # where RunningDaemon sends it
    stderr.touch()
    with RunningDaemon(config, env={"JOURNAL_STREAM": journal_stream(stderr)}) as daemon:
        assert daemon.log_path == stderr  # opened again for writing: the same inode
        wait_for(lambda: b"reconnecting to the broker" in stderr.read_bytes(), timeout=30, what="a warning")
        assert daemon.stop() == 0
    lines = [PREFIXED.fullmatch(line) for line in stderr.read_bytes().splitlines()]
    assert all(lines)
    warnings = [json.loads(m[2])["message"] for m in lines if int(m[1]) <= 4]  # journalctl -p warning
    assert "reconnecting to the broker" in warnings
    assert {json.loads(m[2])["message"]: int(m[1]) for m in lines}["started"] == 6
