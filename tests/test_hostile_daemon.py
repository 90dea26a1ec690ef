"""Hostile formats and bodies mixed into normal traffic, against a running daemon and the real broker."""
from __future__ import annotations

import json
import stat
import zlib
from collections import Counter
from pathlib import Path

import pika

from helpers import (RunningDaemon, expected_attempts, line_count, publish, queue_depth, traffic, wait_for,
                     write_config)
from test_daemon_broker import RECORD_FORMAT
from test_limits import HOSTILE, SECRETS

SAMPLES = Path(__file__).parent / "samples"
RSS_LIMIT_KIB = 300 * 1024

CONFIG = """
[formats]
render_timeout = 0.3
# a loop writing one character a turn must reach the line limit well inside the time
# budget even on a busy 2-core machine: 64 KiB is 65,536 turns, 1 MiB sixteen times as many
max_line_length = 65536

[[outputs]]
name = "all"
type = "file"
path = "log/all.jsonl"

[[outputs]]
name = "domains"
type = "file"
path = "log/domains/{{ record.recipient_domain }}/%Y-%m-%d.log"

[[outputs]]
name = "hostile"
type = "file"
path = "log/hostile.log"

[[routes]]
format = "trace"
output = "all"

[[routes]]
format = "trace"
output = "domains"

[[routes]]
format = "dump"
output = "hostile"
when = "message.attack == 'dump'"
"""


def attack_route(name: str) -> str:
    """A route of the hostile format `name`, taken only by the messages that carry that attack."""
    return f'\n[[routes]]\nformat = "{name}"\noutput = "hostile"\nwhen = "message.attack == \'{name}\'"\n'


def hostile_message(attack: str, recipient: str | None = None) -> dict:
    """The secrets sample as a final result, marked with the attack its route makes."""
    message = json.loads((SAMPLES / "secrets-and-mime.json").read_text())
    message.update(attack=attack, recipient=recipient or f"{attack}@attack.example")
    return message


def gzip_bomb(inflated_mib: int) -> bytes:
    """A gzip body of spaces that inflates to `inflated_mib` MiB (made without holding it)."""
    stream = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * (1 << 20)
    return b"".join(stream.compress(chunk) for _ in range(inflated_mib)) + stream.flush()


def publish_raw(url: str, bodies: list[tuple[bytes, str | None]]) -> None:
    """Publish raw bodies to `results`, each with its content encoding."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare("results", durable=True)
    for body, encoding in bodies:
        channel.basic_publish("", "results", body, pika.BasicProperties(delivery_mode=2,
                                                                         content_encoding=encoding))
    connection.close()


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident memory (VmHWM), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_hostile_formats_and_bodies_cost_only_their_own_parts(workdir, vhost_url):
    (workdir / "formats" / "trace.j2").write_text(RECORD_FORMAT)
    (workdir / "formats" / "dump.j2").write_text("{{ message | tojson }}\n")
    for name, (source, _reason) in HOSTILE.items():
        (workdir / "formats" / f"{name}.j2").write_text(source)
    config = write_config(workdir, vhost_url, CONFIG + "".join(attack_route(name) for name in HOSTILE))
    (workdir / "log" / "domains").mkdir(parents=True)
    (workdir / "log" / "domains" / "collide.example").write_text("")  # a file where a folder must be

    events = traffic(150, seed=3)
    attacks = [*HOSTILE, "dump"]
    odd_recipients = ["x@" + "a/" * 990 + "b", "evil@victim.org/2026-12-01.log", "x@collide.example"]
    hostile = [{"queue": "results", "body": hostile_message(a)} for a in attacks]
    hostile += [{"queue": "results", "body": hostile_message("none", r)} for r in odd_recipients]
    mixed = events[:100] + hostile + events[100:]
    with RunningDaemon(config) as daemon:
        publish(vhost_url, mixed)
        publish_raw(vhost_url, [(gzip_bomb(300), "gzip"), (b'{"results": [{}]}', "br"), (b"not json", None)])
        wait_for(lambda: queue_depth(vhost_url, "results") == 0 and queue_depth(vhost_url, "retry") == 0,
                 timeout=120, what="empty queues")
        # results is read beside retry: from a final message only its newest attempt is new
        expected = expected_attempts(events) + sorted(
            (e["body"]["recipient"], len(e["body"]["results"]), e["body"]["results"][-1]["time"]) for e in hostile)
        output = workdir / "log" / "all.jsonl"
        wait_for(lambda: line_count(output) >= len(expected), what=f"{len(expected)} records")
        # an empty queue may still have deliveries in the daemon's hands: wait for every entry
        quarantined = len(HOSTILE) + len(odd_recipients) + 3
        wait_for(lambda: line_count(workdir / "quarantine" / "quarantine.jsonl") >= quarantined,
                 what=f"{quarantined} quarantine entries")
        assert daemon.process.poll() is None, "the daemon died"
        peak = peak_rss_kib(daemon.process.pid)
        assert daemon.stop() == 0

    assert peak < RSS_LIMIT_KIB, f"peak RSS {peak} KiB"
    written = Counter((r["recipient"], r["attempt"], r["time"])
                      for r in map(json.loads, output.read_text().splitlines()))
    assert sorted(written) == sorted(expected) and set(written.values()) == {1}, "every good record once"

    entries = [json.loads(line) for line in (workdir / "quarantine" / "quarantine.jsonl").read_text().splitlines()]
    by_recipient = {json.loads(e["body"]).get("recipient"): e for e in entries if "body" in e and e.get("routes")}
    for name, (_source, reason) in HOSTILE.items():
        entry = by_recipient[f"{name}@attack.example"]
        assert reason in entry["reason"] and entry["routes"][0]["format"] == name, (name, entry["reason"])
    assert "a value holds '/'" in by_recipient[odd_recipients[0]]["reason"]
    assert "a value holds '/'" in by_recipient[odd_recipients[1]]["reason"]
    assert "Not a directory" in by_recipient[odd_recipients[2]]["reason"]
    whole = [e["reason"] for e in entries if "routes" not in e]
    assert any("inflates past messages.max_size" in r for r in whole)
    assert any("content-encoding 'br' is not supported" in r for r in whole)
    assert any(r.startswith("not JSON") for r in whole) and len(whole) == 3

    dumped = (workdir / "log" / "hostile.log").read_text()
    assert json.loads(dumped)["smarthost"]["password"] == "[redacted]"
    for path in [*workdir.rglob("*.log"), *workdir.rglob("*.jsonl"), daemon.log_path]:
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not any(secret in text for secret in SECRETS), f"a secret in {path}"
    assert stat.S_IMODE((workdir / "quarantine" / "quarantine.jsonl").stat().st_mode) == 0o600
    assert not list((workdir / "log" / "domains").glob("victim.org*/**/*.log")), "a folder made by a recipient"
