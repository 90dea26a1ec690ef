"""Live reload of the real daemon under load, against the test run's RabbitMQ node."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable


from helpers import (ROOT, TRACE_OUTPUT, RunningDaemon, expected_attempts, line_count, publish,
                     queue_depth, traffic, wait_for, write_config)

TRACE = ('{{ {"recipient": message.recipient, "attempt": record.attempt_number, "time": attempt.time} '
         '| json }}')
LINE = re.compile(r"^v(\d+)\|(.*)\|v(\d+)$")



def version(n: int, broken: bool = False) -> str:
    """Format version `n`, its marker at both ends; a broken one does not compile."""
    if broken:
        return f"v{n}|{{{{ record.queue |v{n}\n"
    return f"v{n}|{TRACE}|v{n}\n"


def save_in_place(formats: Path, text: str) -> None:
    with open(formats / "trace.j2", "w") as f:
        f.write(text)


def save_by_rename(formats: Path, text: str) -> None:
    temp = formats / "trace.j2.swp~"
    temp.write_text(text)
    os.replace(temp, formats / "trace.j2")


def save_by_symlink_swap(formats: Path, text: str) -> None:
    """The Kubernetes ConfigMap update: a new folder, then `..data` swapped to it in one rename."""
    old = os.readlink(formats / "..data") if (formats / "..data").is_symlink() else None
    data = formats / f"..{time.monotonic_ns()}"
    data.mkdir()
    (data / "trace.j2").write_text(text)
    (formats / "..data_tmp").symlink_to(data.name)
    os.replace(formats / "..data_tmp", formats / "..data")
    if not (formats / "trace.j2").is_symlink():
        (formats / "trace.j2.link").symlink_to("..data/trace.j2")
        os.replace(formats / "trace.j2.link", formats / "trace.j2")
    if old:
        shutil.rmtree(formats / old)


class Publisher(threading.Thread):
    """Publishes events at a steady pace, the way MailerQ would during the test."""

    def __init__(self, url: str, events: list[dict[str, Any]], per_second: int) -> None:
        super().__init__(name="test-publisher")
        self.url, self.events, self.per_second = url, events, per_second

    def run(self) -> None:
        step = max(self.per_second // 20, 1)
        for start in range(0, len(self.events), step):
            publish(self.url, self.events[start:start + step])
            time.sleep(0.05)


def trace_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(version, record) of each output line; fails on a line not wholly of one version."""
    out = []
    for line in path.read_text().splitlines():
        match = LINE.match(line)
        assert match and match[1] == match[3], f"a line not rendered wholly by one version: {line!r}"
        out.append((int(match[1]), json.loads(match[2])))
    return out


def test_formats_rewritten_150_times_under_load_by_three_save_methods_lose_and_mix_nothing(workdir, vhost_url):
    formats = workdir / "formats"
    (formats / "trace.j2").write_text(version(0))
    config = write_config(workdir, vhost_url, TRACE_OUTPUT)
    events = traffic(2500, seed=5)
    events = [e for e in events if e["queue"] in ("results", "retry")]
    output = workdir / "log" / "all.jsonl"
    methods: list[Callable[[Path, str], None]] = [save_in_place, save_by_rename, save_by_symlink_swap]
    valid, broken, by_method = {0}, set(), {}
    with RunningDaemon(config) as daemon:
        wait_for(lambda: "consuming" in daemon.messages(), what="consuming")
        publisher = Publisher(vhost_url, events, per_second=160)
        publisher.start()
        n = 0
        for method in methods:
            for i in range(50):
                n += 1
                bad = i % 5 == 2
                (broken if bad else valid).add(n)
                by_method[n] = method.__name__
                method(formats, version(n, bad))
                time.sleep(0.18)
        publisher.join()
        expected = expected_attempts(events)
        wait_for(lambda: line_count(output) >= len(expected), what=f"{len(expected)} records")
        wait_for(lambda: queue_depth(vhost_url, "results") == 0 and queue_depth(vhost_url, "retry") == 0,
                 what="empty queues")
        assert daemon.stop() == 0
    written = trace_lines(output)
    versions = {v for v, _ in written}
    assert not versions & broken, f"a broken version took effect: {sorted(versions & broken)}"
    assert versions <= valid
    assert sorted((r["recipient"], r["attempt"], r["time"]) for _, r in written) == expected, "lost or doubled"
    for method in methods:
        live = {v for v in versions if by_method.get(v) == method.__name__}
        assert len(live) >= 10, f"only {len(live)} versions saved by {method.__name__} were ever live"
    failures = [e for e in daemon.log() if e["message"].startswith("format failed to compile")]
    # an in-place save read between its truncate and its write is refused as empty, never used
    assert all(e["file"].endswith("trace.j2") and (e["line"] == 1 or e["error"] == "the format is empty")
               for e in failures)
    assert sum(e["line"] == 1 for e in failures) >= 10, "the broken versions were not seen and refused"


def test_sighup_and_a_config_edit_reconnect_to_new_queues_and_lose_nothing(workdir, vhost_url):
    (workdir / "formats" / "trace.j2").write_text(version(0))
    config = write_config(workdir, vhost_url, TRACE_OUTPUT, queues=("results",))
    events = [e for e in traffic(300, seed=9) if e["queue"] in ("results", "retry")]
    publish(vhost_url, events)
    output = workdir / "log" / "all.jsonl"
    finals = sum(len(e["body"]["results"]) for e in events if e["queue"] == "results")
    with RunningDaemon(config) as daemon:
        wait_for(lambda: line_count(output) == finals, what="the results queue's records")
        # the retry queue joins, with its own scope; results then only hold the last attempt as new
        write_config(workdir, vhost_url, TRACE_OUTPUT.replace("all.jsonl", "second.jsonl"))
        wait_for(lambda: "broker settings changed; reconnecting after the batch in hand" in daemon.messages(),
                 what="the reconnect")
        wait_for(lambda: queue_depth(vhost_url, "retry") == 0, what="the retry queue consumed")
        shutil.move(output, workdir / "log" / "rotated.jsonl")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "outputs reopened" in daemon.messages(), what="the reopen")
        assert daemon.stop() == 0
    assert line_count(workdir / "log" / "rotated.jsonl") == finals
    retries = [e for e in events if e["queue"] == "retry"]
    assert line_count(workdir / "log" / "second.jsonl") == len(retries)
    assert [e["message"] for e in daemon.log()].count("reloaded") >= 2, "the edit and the SIGHUP"


def test_check_shows_each_format_version_and_a_broken_one_with_file_and_line(workdir, vhost_url):
    (workdir / "formats" / "trace.j2").write_text(version(0))
    (workdir / "formats" / "broken.j2").write_text("ok\n{% if %}\n")
    config = write_config(workdir, vhost_url, TRACE_OUTPUT)
    result = subprocess.run([sys.executable, "-m", "logship.cli", "check", "--config", str(config)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 78
    assert re.search(r"format trace: ok \(.*trace\.j2, sha256 [0-9a-f]{12}, modified \d{4}-", result.stdout)
    assert re.search(r"format error: .*broken\.j2:2: .*keeps its last good version", result.stderr)


def test_a_save_is_live_within_a_second_and_an_idle_daemon_needs_no_traffic_to_notice(workdir, vhost_url):
    (workdir / "formats" / "trace.j2").write_text(version(0))
    config = write_config(workdir, vhost_url, TRACE_OUTPUT)
    sample = json.loads((Path(__file__).parent / "samples" / "dns-failure.json").read_text())
    with RunningDaemon(config) as daemon:
        wait_for(lambda: "consuming" in daemon.messages(), what="consuming")
        save_by_rename(workdir / "formats", version(1))
        saved = time.monotonic()
        wait_for(lambda: "reloaded" in daemon.messages(), timeout=5, what="the reload")
        assert time.monotonic() - saved < 1.0
        publish(vhost_url, [{"queue": "results", "body": sample}])
        wait_for(lambda: line_count(workdir / "log" / "all.jsonl") == 1, what="the record")
        assert daemon.stop() == 0
    assert [v for v, _ in trace_lines(workdir / "log" / "all.jsonl")] == [1]
    reloaded = next(e for e in daemon.log() if e["message"] == "reloaded")
    assert reloaded["ok"] is True and reloaded["formats"]["trace"].startswith("sha256 ")
