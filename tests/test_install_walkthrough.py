"""docs/install.md followed in order from a wheel, in a throwaway prefix, as a real service user; then day 2.

The shell lines are read from the pages and run (paths moved into the prefix, the service
user's name for `logship`); the few that need systemd have stand-ins named below, and a
systemd line without one fails the test. When install.md changes, this keeps it true.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from helpers import expected_attempts, line_count, publish, traffic, wait_for
from walkthrough import INSTALL, OPERATIONS, Host, blocks, clean_env, mode, section, step

pytestmark = [pytest.mark.broker]
DEADLINE = 180  # seconds for anything the daemon does: generous for a shared, loaded host


@pytest.fixture
def host() -> Iterator[Host]:
    """A prefix and a service user of this test only, removed afterwards."""
    if os.geteuid() != 0:  # a failure, not a skip: ./tests/run runs the suite as root
        pytest.fail("install.md runs as root (useradd, runuser, chgrp): run the suite with ./tests/run")
    made = Host()
    try:
        yield made
    finally:
        made.cleanup()


def skip(_line: str) -> None:
    """A line the walk-through has no use for here (apt-get, journalctl -f, a checkout's `install`)."""


def configure(host: Host, url: str) -> None:
    """Step 3's edit: broker.url (user, host, vhost); the files in the prefix; metrics on a free port."""
    config = host.path("/etc/logship/logship.toml")
    text = re.sub(r'(?m)^url = ".*"$', f'url = "{url}"', host.moved(config.read_text()))
    config.write_text(re.sub(r'(?m)^listen = ".*"$', 'listen = "127.0.0.1:0"', text))


def test_install_md_from_a_wheel_then_rotation_and_a_quarantine_replay_work_as_written(host, wheel, rabbit):
    vhost, password = broker_side(host, rabbit)
    install_from_the_wheel(host, wheel, f"amqp://{host.user}@127.0.0.1:{rabbit.port}/{vhost}")
    password_and_check(host, password)
    deliveries, expected = enable_and_start(host, rabbit.vhost_url(vhost))
    rotation_and_metrics(host)
    quarantine = a_bad_body_then_a_forced_rotation(host, rabbit.vhost_url(vhost), deliveries, expected)
    replay_the_quarantine(host, quarantine)
    assert host.stop() == 0


def broker_side(host: Host, rabbit: Any) -> tuple[str, str]:
    """Done first, as install.md says: MailerQ's queues, and a RabbitMQ user that may only read them."""
    vhost, password = rabbit.new_vhost(), uuid.uuid4().hex
    publish(rabbit.vhost_url(vhost), [])  # declares results and retry, as MailerQ does
    user = section(INSTALL, "The broker side").split("\n### A RabbitMQ user for logship\n", 1)[1]
    host.on_broker(rabbit, blocks(user)[0], vhost, stdin=password + "\n")  # add_user asks for the password
    return vhost, password


def install_from_the_wheel(host: Host, wheel: Path, url: str) -> None:
    """Step 1, the wheel's block in place of steps 2 and 3, and step 3's edit of the config."""
    host.follow(blocks(step(1))[0], {"apt-get install": skip})
    version = wheel.name.split("-")[1]
    install = blocks(section(INSTALL, "From a wheel, without a checkout"))[1]
    host.follow(install, {"/opt/logship/venv/bin/pip install": lambda line: host.sh(
        line.replace("logship-VERSION-py3-none-any.whl", str(wheel)).replace("VERSION", version))})
    assert mode(host.path("/etc/logship/logship.toml")) == (0o640, "root")
    configure(host, url)


def password_and_check(host: Host, password: str) -> None:
    """Before step 4 the check names the missing password file; steps 4 and 5 make it pass as the service user."""
    check = ["runuser", "-u", host.user, "--", str(host.path("/opt/logship/venv/bin/logship")), "check",
             "--config", str(host.path("/etc/logship/logship.toml"))]
    early = subprocess.run(check, capture_output=True, text=True, env=clean_env())
    assert early.returncode == 78 and "broker.password_file: cannot read" in early.stderr, early.stderr
    host.follow(blocks(step(4))[0], {}, stdin=password + "\n")  # typed at the prompt
    assert mode(host.path("/etc/logship/broker.password"))[0] == 0o640
    (checked,) = host.follow(blocks(step(5))[0], {})
    assert "ok: 2 queues, 2 outputs, 2 routes" in checked.stdout


def enable_and_start(host: Host, url: str) -> tuple[Path, int]:
    """Step 6, the unit's ExecStart= run as its user for `systemctl enable --now`; every attempt arrives."""
    (exec_start,) = re.findall(r"(?m)^ExecStart=(.*)$", host.path("/etc/systemd/system/logship.service").read_text())
    events = traffic(40)
    publish(url, events)
    def consuming(_line: str) -> None:
        """`systemctl status logship`: active, and consuming (what READY=1 says)."""
        wait_for(lambda: host.running() and "consuming" in host.messages(), timeout=DEADLINE, what="READY")

    host.follow(blocks(step(6))[0], {"install -m 0644 systemd/": skip, "systemctl daemon-reload": skip,
                                      "systemctl enable --now logship": lambda _: host.start(exec_start),
                                      "systemctl status logship": consuming, "journalctl -u logship": skip})
    deliveries, expected = host.path("/var/log/logship/deliveries.log"), len(expected_attempts(events))
    wait_for(lambda: host.running() and line_count(deliveries) == expected, timeout=DEADLINE,
             what=f"{expected} records")
    assert mode(deliveries) == (0o640, host.user)
    return deliveries, expected


def rotation_and_metrics(host: Host) -> None:
    """Step 7 with the snippet's paths and signal for this host (as its comment asks), and step 8's curl."""
    snippet = host.path("/etc/logrotate.d/logship")
    snippet.write_text(host.moved(snippet.read_text()).replace(
        "systemctl kill --signal=USR1 logship.service", f"kill -USR1 {host.pid}"))
    host.follow(blocks(step(7))[0], {"install -m 0644 systemd/": skip})
    (curl,) = re.findall(r"`(curl [^`]+)`", step(8))
    listening = next(line for line in host.log.read_text().splitlines() if "metrics listening" in line)
    netloc = re.search(r'"url": ?"http://([^/]+)/metrics"', listening)[1]
    assert "logship_records_written_total" in host.sh(curl.replace("127.0.0.1:9108", netloc)).stdout


def a_bad_body_then_a_forced_rotation(host: Host, url: str, deliveries: Path, expected: int) -> Path:
    """A body that is not a result goes to the quarantine (0600); `logrotate -f` keeps every mode; writing goes on."""
    quarantine = host.path("/var/lib/logship/quarantine.jsonl")
    publish(url, [{"queue": "results", "body": b"{not json"}])
    wait_for(lambda: host.running() and line_count(quarantine) == 1, timeout=DEADLINE, what="the quarantined body")
    assert mode(quarantine) == (0o600, host.user)
    host.sh(f"logrotate -f -s {host.prefix}/logrotate.state /etc/logrotate.d/logship")
    wait_for(lambda: "outputs reopened" in host.messages(), timeout=DEADLINE, what="the reopen on SIGUSR1")
    assert mode(deliveries) == (0o640, host.user) and mode(quarantine) == (0o600, host.user)
    assert line_count(Path(f"{deliveries}.1")) == expected and line_count(Path(f"{quarantine}.1")) == 1
    more = traffic(20, seed=11)
    publish(url, more + [{"queue": "results", "body": b"{still not json"}])
    wait_for(lambda: host.running() and line_count(deliveries) == len(expected_attempts(more))
             and line_count(quarantine) == 1, timeout=DEADLINE, what="records and the quarantine in the new files")
    return quarantine


def replay_the_quarantine(host: Host, quarantine: Path) -> None:
    """operations.md's block: move the file, SIGUSR1 (a new empty 0600 file at once), replay as the service user."""
    def usr1(_line: str) -> None:
        reopens = host.messages().count("outputs reopened")
        subprocess.run(["kill", "-USR1", str(host.pid)], check=True)
        wait_for(lambda: host.messages().count("outputs reopened") > reopens, timeout=DEADLINE, what="the reopen")
        assert quarantine.read_bytes() == b"" and mode(quarantine) == (0o600, host.user)

    replay = next(b for b in blocks(section(OPERATIONS, "The quarantine")) if "logship replay" in b)
    _mv, replayed = host.follow(replay, {"systemctl kill --signal=USR1 logship": usr1})
    assert line_count(host.path("/var/lib/logship/quarantine.replay.jsonl")) == 1
    assert f"replayed 1 messages, 1 quarantined to {quarantine}" in replayed.stderr
    # still not a result: kept again, with the queue and the routing key it came with
    (kept,) = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert (kept["queue"], kept["routing_key"], kept["body"]) == ("results", "results", "{still not json")
