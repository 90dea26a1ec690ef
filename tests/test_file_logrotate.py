"""Debian's logrotate, forced twice a second while the daemon writes: every record once, no NUL, whole lines."""
from __future__ import annotations

import functools
import gzip
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from helpers import (TRACE_OUTPUT, RunningDaemon, expected_attempts, publish, queue_depth, traffic,
                     wait_for, write_config)
from test_daemon_broker import RECORD_FORMAT

ROOT = Path(__file__).resolve().parent.parent
SNIPPET = ROOT / "systemd" / "logship.logrotate"
EMAILS = int(os.environ.get("LOGSHIP_LOGROTATE_EMAILS", "35000"))  # about 50,000 messages


def snippet(mode: str, path: Path, pid: int) -> str:
    """The shipped snippet's block for `mode`, pointed at `path` and at the test daemon's pid."""
    text = SNIPPET.read_text()
    marker = "copytruncate" if mode == "copytruncate" else "create"
    block = text[text.index(f"# --- {marker} ---"):]
    block = block[block.index("\n/") + 1 if marker == "create" else block.index("\n#/") + 1:block.index("# --- end ---")]
    if marker == "copytruncate":
        block = "\n".join(line[1:] if line.startswith("#") else line for line in block.splitlines())
    if mode == "create-without-signal":
        block = block[:block.index("    postrotate")] + "}\n"
    block = block.replace("/var/log/logship/*.log /var/log/logship/*.jsonl", str(path))
    block = block.replace("systemctl kill --signal=USR1 logship.service", f"kill -USR1 {pid}")
    return block.replace("rotate 30", "rotate 1000")  # keep every rotated file for the count


def start_rotating(conf: Path, state: Path, every: float = 0.5) -> subprocess.Popen:
    """logrotate -f in a loop, its complaints collected in conf.errors (stopped by the caller)."""
    loop = (f'while [ ! -e "{conf}.stop" ]; do logrotate -f -s "{state}" "{conf}" 2>>"{conf}.errors"; '
            f'echo >>"{conf}.runs"; sleep {every}; done')
    return subprocess.Popen(["sh", "-c", loop], start_new_session=True)


def stop_rotating(loop: subprocess.Popen, conf: Path) -> int:
    """Let the loop finish the rotation in hand, then stop; return how many rotations ran."""
    Path(f"{conf}.stop").touch()  # a logrotate killed mid-copy would leave lines in two files
    try:
        loop.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(loop.pid, signal.SIGTERM)
        loop.wait()
    # a batch landing between logrotate's rename and its create makes logrotate keep our
    # new file as NAME-DATE.backup and complain: nothing is lost, the count includes that file
    errors = [line for line in Path(f"{conf}.errors").read_text().splitlines()
              if "already exists, renaming" not in line] if Path(f"{conf}.errors").exists() else []
    assert not errors, errors
    return len(Path(f"{conf}.runs").read_text().splitlines())


@functools.lru_cache(maxsize=1)
def messages() -> list[dict]:
    """The traffic of the logrotate tests (made once: about 7 s for 50,000 messages)."""
    return traffic(EMAILS, seed=3)


def records_so_far(folder: Path) -> int:
    """Distinct lines in every file of the output so far (while logrotate copies, the copy and
    the original hold the same lines; a file being compressed or renamed counts 0)."""
    seen: set[bytes] = set()
    for file in folder.glob("all.jsonl*"):
        try:
            data = file.read_bytes()
            whole = (gzip.decompress(data) if file.name.endswith(".gz") else data).split(b"\n")[:-1]
            seen.update(whole)  # only lines with their newline: a read may catch a write half-way
        except (OSError, EOFError):
            pass
    return len(seen)


def every_line(folder: Path) -> list[str]:
    """The lines of every file in `folder` (rotated and compressed ones too), checked to be whole."""
    lines = []
    for file in folder.iterdir():
        if not file.name.startswith("all.jsonl"):
            continue
        data = gzip.decompress(file.read_bytes()) if file.name.endswith(".gz") else file.read_bytes()
        assert b"\0" not in data, f"NUL bytes in {file.name}"
        assert not data or data.endswith(b"\n"), f"{file.name} ends with a partial line"
        lines += data.decode().splitlines()
    return lines


@pytest.mark.parametrize("mode", ["create", "create-without-signal", "copytruncate"])
def test_logrotate_forced_twice_a_second_under_load_loses_and_duplicates_nothing(workdir, vhost_url, mode):
    events = messages()
    expected = expected_attempts(events)
    (workdir / "formats" / "trace.j2").write_text(RECORD_FORMAT)
    config = write_config(workdir, vhost_url, TRACE_OUTPUT)
    output = workdir / "log" / "all.jsonl"
    conf, state = workdir / "logrotate.conf", workdir / "logrotate.state"
    started = time.monotonic()
    with RunningDaemon(config) as daemon:
        conf.write_text(snippet(mode, output, daemon.process.pid))
        # a signal in the first instants of the interpreter, before logship's code runs, would
        # kill any program that handles it; logrotate's SIGUSR1 comes once logship's has
        wait_for(daemon.signals_handled, timeout=30, what="SIGUSR1 handled")
        loop = start_rotating(conf, state)
        try:
            published = publish(vhost_url, events)  # the daemon writes while this publishes
            wait_for(lambda: records_so_far(output.parent) >= len(expected), timeout=120, what="every record")
            assert daemon.stop() == 0
        finally:
            runs = stop_rotating(loop, conf)
    assert queue_depth(vhost_url, "results") == queue_depth(vhost_url, "retry") == 0, "unacked messages came back"
    seconds = time.monotonic() - started
    lines = every_line(output.parent)
    counts = Counter((r["recipient"], r["attempt"], r["time"]) for r in map(json.loads, lines))
    assert sorted(counts) == expected, "a record is missing"
    assert max(counts.values()) == 1, "a record was written twice"
    files = len([f for f in output.parent.iterdir() if f.name.startswith("all.jsonl")])
    assert runs >= 5 and files >= 5, f"only {runs} rotations, {files} files: the test proved little"
    print(f"{mode}: {published} messages, {len(lines)} records, {runs} rotations, {files} files, {seconds:.1f} s")
