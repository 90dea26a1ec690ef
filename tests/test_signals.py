"""SIGUSR1 reopens the files only; SIGHUP reloads too; the shipped logrotate snippet covers every file."""
from __future__ import annotations

import fnmatch
import json
import signal
import stat
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from helpers import ROOT, TRACE_OUTPUT, RunningDaemon, line_count, metrics_url, publish, scrape, wait_for, write_config
from test_notify import NotifyListener

SNIPPET = ROOT / "systemd" / "logship.logrotate"
EXAMPLE = ROOT / "systemd" / "logship.toml"
SAMPLES = ROOT / "tests" / "samples"
TRACE = '{{ {"recipient": message.recipient, "attempt": record.attempt_number} | json }}\n'


def blocks(text: str) -> dict[str, tuple[list[str], str]]:
    """The snippet's blocks by marker: (path patterns, body), commented-out blocks uncommented."""
    found = {}
    for part in text.split("# --- ")[1:]:
        marker, _, rest = part.partition(" ---\n")
        if marker == "end":
            continue
        lines = [line[1:] if line.startswith("#/") or line.startswith("#  ") else line for line in rest.splitlines()]
        head = next(i for i, line in enumerate(lines) if line.startswith("/"))
        end = next(i for i, line in enumerate(lines) if line == "}" or line == "#}")
        found[marker] = (lines[head].rstrip(" {").split(), "\n".join(lines[head + 1:end]) + "\n}\n")
    return found


def test_the_logrotate_snippet_covers_every_file_the_example_config_writes_and_sends_sigusr1():
    config = tomllib.loads(EXAMPLE.read_text())
    written = [o["path"] for o in config["outputs"] if o["type"] == "file"] + [config["quarantine"]["path"]]
    found = blocks(SNIPPET.read_text())
    assert set(found) == {"create", "copytruncate", "quarantine"}
    for path in written:
        covered = [m for m, (patterns, _body) in found.items() if any(fnmatch.fnmatch(path, p) for p in patterns)]
        assert covered in (["create", "copytruncate"], ["quarantine"]), (path, covered)
    for marker in ("create", "quarantine"):
        assert "systemctl kill --signal=USR1 logship.service" in found[marker][1]
    # the quarantine may hold raw bodies: a rotation must not make it group-readable
    assert "create 0600" in found["quarantine"][1] and "create 0640" in found["create"][1]
    assert "--signal=HUP" not in SNIPPET.read_text()


def logrotate_conf(output: Path, quarantine: Path, pid: int) -> str:
    """The shipped create and quarantine blocks, pointed at the test's files and daemon."""
    found = blocks(SNIPPET.read_text())
    text = ""
    for marker, path in (("create", output), ("quarantine", quarantine)):
        text += f"{path} {{\n{found[marker][1]}"
    return text.replace("systemctl kill --signal=USR1 logship.service", f"kill -USR1 {pid}")


def publish_good_and_bad(url: str, recipient: str) -> None:
    """One result message that writes one record, and one body that is quarantined."""
    good = json.loads((SAMPLES / "dns-failure.json").read_text())
    publish(url, [{"queue": "results", "body": {**good, "recipient": recipient}},
                  {"queue": "results", "body": (SAMPLES / "not-json.txt").read_bytes()}])


@pytest.mark.broker
def test_sigusr1_from_the_shipped_logrotate_reopens_outputs_and_quarantine_without_a_reload(workdir, vhost_url):
    (workdir / "formats" / "trace.j2").write_text(TRACE)
    config = write_config(workdir, vhost_url, TRACE_OUTPUT + '\n[quarantine]\npath = "kept/quarantine.jsonl"\n'
                          '\n[metrics]\nlisten = "127.0.0.1:0"\n', queues=("results",))
    output, quarantine = workdir / "log" / "all.jsonl", workdir / "kept" / "quarantine.jsonl"
    listener = NotifyListener(str(workdir / "notify.sock"))
    try:
        with RunningDaemon(config, env={"NOTIFY_SOCKET": listener.address}) as daemon:
            url = metrics_url(daemon)
            wait_for(lambda: listener.with_key("READY"), what="READY=1")
            publish_good_and_bad(vhost_url, "before@example.com")
            wait_for(lambda: line_count(output) == line_count(quarantine) == 1, what="the first record and quarantine")
            conf = workdir / "logrotate.conf"
            conf.write_text(logrotate_conf(output, quarantine, daemon.process.pid))
            rotated = subprocess.run(["logrotate", "-f", "-s", str(workdir / "logrotate.state"), str(conf)],
                                     capture_output=True, text=True)
            assert rotated.returncode == 0, rotated.stderr
            wait_for(lambda: "outputs reopened" in daemon.messages(), what="the reopen")
            # the files logrotate created: outputs for group logship's shippers, the quarantine for logship only
            assert (stat.S_IMODE(output.stat().st_mode), stat.S_IMODE(quarantine.stat().st_mode)) == (0o640, 0o600)
            publish_good_and_bad(vhost_url, "after@example.com")
            wait_for(lambda: line_count(output) == line_count(quarantine) == 1 and
                     "after@" in output.read_text(), what="the records in the new files")
            usr1 = scrape(url)
            daemon.process.send_signal(signal.SIGHUP)
            wait_for(lambda: "reloaded" in daemon.messages(), what="the SIGHUP reload")
            wait_for(lambda: len(listener.with_key("READY")) == 2, what="READY=1 after the reload")
            hup = scrape(url)
            assert daemon.stop() == 0
    finally:
        listener.close()
    assert "before@" in Path(f"{output}.1").read_text() and line_count(Path(f"{quarantine}.1")) == 1
    assert usr1[("logship_output_reopens_total", ())] == 1
    assert usr1[("logship_reloads_total", (("outcome", "ok"),))] == 0
    assert usr1[("logship_reloads_total", (("outcome", "failed"),))] == 0
    assert hup[("logship_output_reopens_total", ())] == 2
    assert hup[("logship_reloads_total", (("outcome", "ok"),))] == 1
    assert len(listener.with_key("RELOADING")) == 1, "SIGUSR1 sent RELOADING=1"
    assert daemon.messages().count("reloaded") == 1


@pytest.mark.broker
def test_sigusr1_and_sighup_while_the_daemon_starts_do_not_kill_it(workdir, vhost_url):
    (workdir / "formats" / "trace.j2").write_text(TRACE)
    config = write_config(workdir, vhost_url, TRACE_OUTPUT, queues=("results",))
    with RunningDaemon(config) as daemon:
        wait_for(daemon.signals_handled, timeout=30, what="SIGUSR1 and SIGHUP handled")
        for _ in range(50):  # from the first instants of logship's code to well after start-up
            for sig in (signal.SIGUSR1, signal.SIGHUP):
                if daemon.process.poll() is None:
                    daemon.process.send_signal(sig)
            if "consuming" in daemon.messages():
                break
            time.sleep(0.02)
        assert daemon.process.poll() is None, "a signal at start-up killed the daemon"
        wait_for(lambda: "consuming" in daemon.messages(), timeout=60, what="the daemon consuming")
        assert daemon.stop() == 0
