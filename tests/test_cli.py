"""The command line: render every sample, replay generated traffic, exit codes."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from helpers import GENERATOR, logship, traffic, write_config

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "tests" / "samples").glob("*.json"))


@pytest.fixture
def config(workdir: Path) -> Path:
    """The README example in a work folder."""
    text = (ROOT / "tests" / "traffic" / "example.toml").read_text()
    path = workdir / "logship.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_render_prints_one_line_per_attempt_of_every_sample_and_scope_latest_only_the_newest(config, sample):
    out = logship("render", "--config", str(config), "--format", "json", "--queue", "results", str(sample))
    if sample.name == "not-a-result.json":
        assert out.returncode == 65 and "not a result message" in out.stderr
        return
    assert out.returncode == 0, out.stderr
    attempts = len(json.loads(sample.read_text())["results"])
    # results is consumed beside retry in the example (scope latest there), yet render shows
    # every attempt: an operator testing a format wants each attempt's line
    assert [json.loads(line)["attempt"] for line in out.stdout.splitlines()] == list(range(1, attempts + 1))
    latest = logship("render", "--config", str(config), "-f", "json", "--scope", "latest", str(sample))
    assert [json.loads(line)["attempt"] for line in latest.stdout.splitlines()] == [attempts]


def test_render_reads_the_shipped_samples_by_name_and_lists_them_without_a_config(config, tmp_path):
    listed = subprocess.run([sys.executable, "-m", "logship.cli", "render", "--sample"], cwd=tmp_path,
                            capture_output=True, text=True, env={"LOGSHIP_CONFIG": str(tmp_path / "none.toml")})
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    shipped = ROOT / "logship" / "shipped" / "samples"
    assert sorted(names) == sorted(p.stem for p in shipped.glob("*.json"))
    both = logship("render", "-c", str(config), "-f", "mailerq", "--sample", "results-queue-after-retry",
                   "--sample", "dns-failure")
    files = logship("render", "-c", str(config), "-f", "mailerq", str(shipped / "results-queue-after-retry.json"),
                    str(shipped / "dns-failure.json"))
    assert both.returncode == 0 and both.stdout.splitlines()[:2] == files.stdout.splitlines()[:2]
    assert len(both.stdout.splitlines()) == 3
    unknown = logship("render", "-c", str(config), "-f", "mailerq", "--sample", "no-such")
    assert unknown.returncode == 2 and "no sample 'no-such'" in unknown.stderr
    nothing = logship("render", "-c", str(config), "-f", "mailerq")
    assert nothing.returncode == 2 and "--sample" in nothing.stderr


def test_render_of_a_body_that_is_not_json_exits_65(config):
    out = logship("render", "--config", str(config), "-f", "mailerq", str(ROOT / "tests/samples/not-json.txt"))
    assert out.returncode == 65 and "not JSON" in out.stderr and out.stdout == ""


def test_replay_writes_every_attempt_of_generated_traffic_exactly_once(workdir):
    (workdir / "formats" / "trace.j2").write_text(
        '{{ [message.recipient, record.attempt_number, attempt.time] | json }}')
    config = write_config(workdir, "amqp://localhost", '[[outputs]]\nname = "o"\ntype = "file"\npath = "out.log"\n'
                          '[[routes]]\nformat = "trace"\noutput = "o"\n', queues=("results",))
    traffic = subprocess.run([sys.executable, str(GENERATOR), "10000", "--bodies-only", "--queue", "results"],
                             check=True, capture_output=True).stdout
    out = logship("replay", "--config", str(config), "-", stdin=traffic)
    assert out.returncode == 0, out.stderr
    expected = Counter((m["recipient"], i + 1, a["time"]) for m in map(json.loads, traffic.splitlines())
                       for i, a in enumerate(m["results"]))
    written = Counter(tuple(json.loads(line)) for line in (workdir / "out.log").read_text().splitlines())
    assert written == expected and max(written.values()) == 1
    assert b"replayed 10000 messages, 0 quarantined" in out.stderr


def test_the_suites_traffic_is_what_the_generators_command_line_prints() -> None:
    """helpers.traffic() runs the generator's loop in-process (seconds faster): it must print nothing else."""
    for n, seed in ((300, 7), (40, 11)):
        lines = subprocess.run([sys.executable, str(GENERATOR), str(n), "--seed", str(seed)],
                               check=True, capture_output=True, text=True).stdout.splitlines()
        events = traffic(n, seed=seed)
        assert events == [json.loads(line) for line in lines]
    events[0]["body"]["results"][0]["time"] = "changed"  # each event a copy of its own, as parsed JSON is
    assert all(e["body"]["results"][0]["time"] != "changed" for e in events[1:])


def test_replay_quarantines_bad_lines_and_goes_on(config, workdir):
    lines = b"".join(p.read_bytes().replace(b"\n", b"") + b"\n" for p in SAMPLES)
    lines += (ROOT / "tests/samples/not-json.txt").read_bytes()
    out = logship("replay", "--config", str(config), "-", stdin=lines)
    assert out.returncode == 0
    assert b"replayed 11 messages, 2 quarantined" in out.stderr
    assert len((workdir / "quarantine" / "quarantine.jsonl").read_text().splitlines()) == 2
    # plain lines are a complete set: every attempt of the 9 good samples (11), not just the newest
    assert len((workdir / "log" / "deliveries.log").read_text().splitlines()) == 11


def test_every_command_explains_itself():
    for command in ("run", "check", "render", "replay"):
        out = logship(command, "--help")
        assert out.returncode == 0 and "--config" in out.stdout


def test_replay_of_a_quarantine_file_sends_the_kept_bodies_again(config, workdir):
    import gzip
    good = (ROOT / "tests/samples/dns-failure.json").read_bytes()
    quarantine = workdir / "kept.jsonl"
    quarantine.write_text("\n".join(json.dumps(entry) for entry in [
        {"quarantined": "2026-11-29T00:00:00.000Z", "reason": "format 'x' failed", "queue": "results",
         "routing_key": "", "redelivered": False, "content_encoding": None, "body": good.decode()},
        {"quarantined": "2026-11-29T00:00:00.000Z", "reason": "format 'x' failed", "queue": "results",
         "routing_key": "", "redelivered": False, "content_encoding": "gzip",
         "body_base64": __import__("base64").b64encode(gzip.compress(good)).decode()},
    ]) + "\n")
    out = logship("replay", "--config", str(config), str(quarantine))
    assert out.returncode == 0, out.stderr
    assert "replayed 2 messages, 0 quarantined" in out.stderr
    lines = (workdir / "log" / "deliveries.log").read_text().splitlines()
    assert lines == ["[2026-11-27 08:00:01] dns:error 1 <bounces@sender.example.com> "
                     "<someone@no-such-domain.invalid> 550 5.1.2 Host or domain name not found"] * 2


def test_the_command_line_ignores_sigusr1_and_sighup_before_its_slower_imports():
    probe = ("import signal, sys; import logship.cli; "
             "print(signal.getsignal(signal.SIGUSR1) == signal.getsignal(signal.SIGHUP) == signal.SIG_IGN)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", "a logrotate SIGUSR1 during start-up would kill the daemon"
