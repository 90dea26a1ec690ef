"""MailerQ as deployed, per version and exchange setting: set up with `init --from-mailerq`, run, publish as MailerQ."""
from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from helpers import (TRACE_OUTPUT, RunningDaemon, expected_attempts, line_count, logship, metrics_url, queue_depth,
                     scrape, traffic, wait_for)
from mailerq import LAYOUTS, MAILERQ_PASSWORD, MailerQ, OtherConsumer

TRACE = ('{{ {"recipient": message.recipient, "attempt": record.attempt_number, "time": attempt.time, '
         '"queue": record.queue} | json }}\n')
LOGSHIP_PASSWORD = "logship-own-pw"
CAP = 400  # small enough to pass in a test, larger than any queue's backlog while logship runs
USER_MADE: set[str] = set()  # the nodes (by name) that have logship's user with LOGSHIP_PASSWORD


def initialised(rabbit, mq: MailerQ, folder: Path) -> tuple[Path, str]:
    """`init --from-mailerq` on MailerQ's file, logship's user made as it says; the config and what it printed."""
    out = logship("init", "--from-mailerq", str(mq.config_file(folder / "mailerq.txt")), str(folder / "etc"))
    assert out.returncode == 0, out.stderr
    if rabbit.name not in USER_MADE:  # one rabbitmqctl call (about 1 s) per run, not per layout
        try:
            rabbit.ctl("add_user", "logship", LOGSHIP_PASSWORD)
        except subprocess.CalledProcessError:
            pass  # made by an earlier test of this run; permissions are per vhost
        USER_MADE.add(rabbit.name)
    line = next(line for line in out.stdout.splitlines() if "rabbitmqctl set_permissions" in line)
    rabbit.ctl(*shlex.split(line)[1:])
    etc = folder / "etc"
    (etc / "broker.password").write_text(LOGSHIP_PASSWORD + "\n")
    (etc / "formats" / "trace.j2").write_text(TRACE)
    head = (etc / "logship.toml").read_text().split("[formats]")[0]
    config = etc / "logship.toml"
    head = head.replace(f"max_length = {250_000}", f"max_length = {CAP}")
    config.write_text(head + f'[formats]\ndir = "{etc}/formats"\n'
                      + TRACE_OUTPUT.replace("log/all.jsonl", str(folder / "log" / "all.jsonl"))
                      + '\n[metrics]\nlisten = "127.0.0.1:0"\n')
    return config, out.stdout


def pumping(others: list[OtherConsumer], condition, what: str, timeout: float = 90) -> None:
    """Wait for `condition` while the other consumers take their messages."""
    def pumped() -> bool:
        for other in others:
            other.pump()
        return condition()
    wait_for(pumped, timeout=timeout, what=what)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_attempt_is_written_once_and_the_other_consumers_get_every_message(layout, rabbit, vhost_url, tmp_path):
    mq = MailerQ(vhost_url, LAYOUTS[layout])
    mq.declare()
    config, said = initialised(rabbit, mq, tmp_path)
    # with a named exchange another program already reads each of MailerQ's result queues
    others = {q: OtherConsumer(vhost_url, q) for q in mq.queues() if mq.exchange and q != "outbox"}
    check = logship("check", "--broker", "--config", str(config))
    assert check.returncode == 0, check.stdout + check.stderr
    events = traffic(120, seed=22)
    output = tmp_path / "log" / "all.jsonl"
    expected = expected_attempts(events)
    try:
        with RunningDaemon(config) as daemon:
            pumping(list(others.values()), lambda: "consuming" in daemon.messages(), "consuming")
            mq.publish(events)
            pumping(list(others.values()), lambda: line_count(output) >= len(expected), f"{len(expected)} records")
            assert daemon.stop() == 0
        records = map(json.loads, output.read_text().splitlines())
        written = sorted((r["recipient"], r["attempt"], r["time"]) for r in records)
        assert written == expected
        for queue, other in others.items():
            pumping([other], lambda: other.received == mq.published[queue], f"every message on {queue}")
        assert not any("other consumer" in m for m in daemon.messages())  # copies of its own: nobody shares
        if mq.exchange:
            capped_burst(mq, others, config)
    finally:
        for other in others.values():
            other.close()
        mq.close()
    kept = "".join(p.read_text() for p in (tmp_path / "etc").rglob("*") if p.is_file()) + said
    assert MAILERQ_PASSWORD not in kept


def capped_burst(mq: MailerQ, others: dict[str, OtherConsumer], config: Path) -> None:
    """logship stopped, a burst past the caps: every publish confirmed, the copy at its cap, the others get all."""
    kind = "success" if mq.new else "results"
    key = mq.key(kind)
    finals = [{"queue": kind, "body": {"recipient": f"burst{i}@example.org", "results": [
        {"state": "message", "result": "accepted", "time": "2026-12-02 12:00:00"}]}} for i in range(CAP * 2 + 100)]
    assert mq.publish(finals) == len(finals)  # each publish confirmed: a refused one raises NackError
    assert queue_depth(mq.url, "logship.results") == CAP
    pumping(list(others.values()), lambda: others[key].received == mq.published[key], f"the burst on {key}")
    with RunningDaemon(config) as daemon:
        pumping([], lambda: any(m.startswith("queue at its cap") for m in daemon.messages()), "the cap warning")
        reached = scrape(metrics_url(daemon))
        assert reached[("logship_queue_cap_reached_total", (("queue", "logship.results"),))] == 1
        pumping([], lambda: queue_depth(mq.url, "logship.results") == 0, "the copy drained")
        assert daemon.stop() == 0
    at_cap = next(e for e in daemon.log() if e["message"].startswith("queue at its cap"))
    assert at_cap["queue"] == "logship.results" and at_cap["max_length"] == CAP


def test_consuming_the_outbox_or_the_retries_directly_is_refused_with_the_bind_to_use(workdir):
    for name, role in (("outbox", None), ("retries", None), ("mq-retries", "retries")):
        text = f'[[queues]]\nname = "{name}"\n' + (f'role = "{role}"\n' if role else "") + TRACE_OUTPUT
        (workdir / "formats" / "trace.j2").write_text(TRACE)
        (workdir / "logship.toml").write_text(text)
        out = logship("check", "--config", str(workdir / "logship.toml"))
        assert out.returncode == 78, out.stderr
        assert str(workdir / "logship.toml") in out.stderr and "takes them away from MailerQ" in out.stderr
        assert "bind = [{ exchange = " in out.stderr


def test_check_broker_exits_69_when_no_node_answers(workdir):
    (workdir / "formats" / "trace.j2").write_text(TRACE)
    (workdir / "logship.toml").write_text('[broker]\nurl = ["amqp://guest:guest@127.0.0.1:1/%2F", '
                                          '"amqp://guest:guest@127.0.0.1:2/%2F"]\n[[queues]]\nname = "results"\n'
                                          + TRACE_OUTPUT)
    started = time.monotonic()
    out = logship("check", "--broker", "--config", str(workdir / "logship.toml"))
    assert out.returncode == 69, out.stdout + out.stderr
    assert out.stdout.count("unreachable") == 2 and time.monotonic() - started < 30
