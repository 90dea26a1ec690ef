"""Faults of the network, the broker, the host and the outputs while MailerQ traffic flows, judged by one oracle.

Each scenario starts the daemon on a vhost of its own, publishes numbered traffic (tests/faults/feed.py)
that goes on through the fault, heals the fault, and hands over to FaultRun.finish: every attempt
written, twice only where RabbitMQ redelivered, no torn line, the queues empty, the daemon running
until its SIGTERM (exit 0). The figures go to build/fault-figures.json and docs/guarantees.md.
"""
from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pika
import pytest

from broker import RabbitNode
from helpers import queue_depth, wait_for
from oracle import FaultRun, Outcome, daemon_connections, pause_for
from proxy import Proxy
from syslog_receivers import Rsyslog
from test_file_disk_full import fill

pytestmark = pytest.mark.broker

RECONNECTING = "reconnecting to the broker"
FAILED = "an output failed; not acknowledging until it recovers"


def test_a_partition_shorter_than_the_heartbeat_timeout_loses_nothing(run: FaultRun, rabbit: RabbitNode) -> None:
    with Proxy(rabbit.port) as proxy:
        with run.start(run.config(url=proxy.url(run.vhost), heartbeat=20), seconds=12) as daemon:
            with run.fault("network partition of 5 s, shorter than the heartbeat timeout (20 s)"):
                proxy.partition()
                pause_for(5)
                proxy.heal()
            run.recovered()
            run.finish(daemon)
    assert RECONNECTING not in daemon.messages(), "a partition shorter than the heartbeat timeout ended the connection"


def test_a_partition_longer_than_the_heartbeat_timeout_ends_in_a_reconnect_and_loses_nothing(
        run: FaultRun, rabbit: RabbitNode) -> None:
    with Proxy(rabbit.port) as proxy:
        with run.start(run.config(url=proxy.url(run.vhost), heartbeat=2), seconds=25) as daemon:
            with run.fault("network partition until the heartbeat timeout (2 s) ends the connection, then 5 s more, "
                           "new connections included"):
                proxy.partition()
                connections = proxy.connections
                # pika checks the heartbeat every timeout + 5 s: the partition lasts 7-14 s before it is noticed
                wait_for(lambda: RECONNECTING in daemon.messages() or daemon.process.poll() is not None,
                         timeout=20, what="the heartbeat timeout noticed")
                pause_for(5)  # the new connection the daemon opens meanwhile is held by the partition
                proxy.heal()
            run.recovered()
            run.finish(daemon)
    assert proxy.connections > connections, "the daemon never tried a new connection during the partition"
    assert RECONNECTING in daemon.messages()


def test_the_broker_closing_the_connection_three_times_loses_nothing(run: FaultRun, rabbit: RabbitNode) -> None:
    with run.start(run.config(), seconds=15) as daemon:
        for closed in range(1, 4):
            with run.fault("the broker closes the connection (rabbitmqctl close_connection)"):
                for name in daemon_connections(rabbit, run.vhost):
                    rabbit.ctl("close_connection", name, "closed by the fault suite")
            wait_for(lambda: daemon.messages().count("consuming") > closed, what="consuming again")
        run.recovered()
        run.finish(daemon)
    assert daemon.messages().count(RECONNECTING) >= 3


def test_the_queue_deleted_under_the_consumer_loses_nothing(run: FaultRun, rabbit: RabbitNode) -> None:
    with run.start(run.config(), seconds=12) as daemon:
        assert run.feed is not None
        with run.fault("the retry queue deleted under the consumer (the daemon declares it again)"):
            # Deleting a queue drops what it holds: so it goes once the daemon has settled all of it,
            # and the publisher waits meanwhile (then publishes again what came back unroutable).
            run.feed.hold()
            wait_for(lambda: run.unsettled() == 0, what="every message settled before the delete")
            connection = pika.BlockingConnection(pika.URLParameters(run.url))
            dropped = connection.channel().queue_delete("retry").method.message_count
            connection.close()
            assert dropped == 0
            run.feed.resume()
        wait_for(lambda: daemon.messages().count("consuming") >= 2, what="consuming again")
        run.recovered()
        run.finish(daemon)
    reasons = [e.get("error", "") for e in daemon.log() if e["message"] == RECONNECTING]
    assert any("cancelled" in r for r in reasons), reasons


def test_a_memory_alarm_blocking_the_publishers_loses_nothing_and_the_daemon_keeps_consuming(
        run: FaultRun, rabbit: RabbitNode) -> None:
    with run.start(run.config(), seconds=12) as daemon:
        assert run.feed is not None
        with run.fault("memory alarm for 5 s: every publisher blocked (set_vm_memory_high_watermark)"):
            rabbit.ctl("set_vm_memory_high_watermark", "0.000001")
            try:
                wait_for(lambda: "memory" in rabbit.ctl("eval", "rabbit_alarm:get_alarms()."), what="the alarm")
                sent = run.feed.sent
                pause_for(5)
                assert run.feed.sent <= sent + 1, "the publisher was not blocked"
            finally:
                rabbit.ctl("set_vm_memory_high_watermark", "0.4")
        run.recovered()
        run.finish(daemon)
    assert RECONNECTING not in daemon.messages(), "an alarm for publishers cut the consumer's connection"


def test_the_users_permissions_revoked_and_restored_lose_nothing(run: FaultRun, rabbit: RabbitNode) -> None:
    user, password = f"logship-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    rabbit.ctl("add_user", user, password)
    try:
        rabbit.ctl("set_permissions", "-p", run.vhost, user, ".*", ".*", ".*")
        url = f"amqp://{user}:{password}@127.0.0.1:{rabbit.port}/{run.vhost}"
        with run.start(run.config(url=url), seconds=15) as daemon:
            with run.fault("the daemon's user loses its permissions for 5 s (and its connection)"):
                rabbit.ctl("clear_permissions", "-p", run.vhost, user)
                # RabbitMQ keeps open connections as they are: the revoke bites at the reconnect
                for name in daemon_connections(rabbit, run.vhost):
                    rabbit.ctl("close_connection", name, "permissions revoked by the fault suite")
                wait_for(lambda: daemon.messages().count(RECONNECTING) >= 2, what="a reconnect refused")
                pause_for(5)
                rabbit.ctl("set_permissions", "-p", run.vhost, user, ".*", ".*", ".*")
            run.recovered()
            run.finish(daemon)
    finally:
        rabbit.ctl("delete_user", user)


def test_a_node_restart_loses_nothing(run: FaultRun, rabbit: RabbitNode) -> None:
    with run.start(run.config(), seconds=20) as daemon:
        with run.fault("RabbitMQ node restarted (SIGTERM, start)"):
            rabbit.restart()
        run.recovered()
        run.finish(daemon)
    assert RECONNECTING in daemon.messages()


def test_a_kill_9_mid_batch_and_a_restart_lose_nothing_and_leave_no_torn_line(run: FaultRun) -> None:
    config = run.config()
    # Batches of 20 settle within milliseconds of each chunk the feed publishes, so a kill at a
    # random moment mostly finds nothing in hand. Here a batch is held for 2 s (a chunk comes
    # every ~0.35 s, so the broker is never quiet long enough to settle it sooner), and the kill
    # comes 1 s after a flush: about a second of traffic is in hand, on a busy host too.
    config.write_text(config.read_text().replace("batch_size = 20", "batch_size = 100000\nbatch_interval = 2.0"))
    first = run.start(config, seconds=10)
    with run.fault("kill -9 of the daemon mid-batch (its last line torn, as a kill inside write(2) leaves it), then a restart"):
        wait_for(lambda: run.written() > 100, what="a first batch")
        flushed = run.written()
        wait_for(lambda: run.written() > flushed, what="the next batch")
        pause_for(1.0)  # mid-batch: the fault's timing, not a wait for a condition
        first.process.kill()
        assert first.process.wait() == -signal.SIGKILL
        # Linux ends a write(2) to a regular file between two pages once a fatal signal is
        # pending, so the last batch can end half-way through a line. That batch was never
        # acked and comes again; the fragment must not glue itself onto the next record.
        with open(run.output, "ab") as output:
            output.write(b'{"n": 1, "attempt": 1, "redeliv')
    run.exits = "killed (-9); restarted, 0 on SIGTERM"
    with run.daemon(config) as second:
        run.recovered()
        run.finish(second)
    assert any(r["redelivered"] for r in run.read().records), "the kill left no delivery in hand"
    assert "a torn last line was cut from an output file found on disk" in second.messages()


def test_a_full_disk_stops_the_acks_and_loses_nothing(run: FaultRun, small_disk: Path) -> None:
    run.output = small_disk / "all.jsonl"
    outputs = f'[[outputs]]\nname = "all"\ntype = "file"\npath = "{run.output}"\n\n' \
              '[[routes]]\nformat = "trace"\noutput = "all"\n'
    with run.start(run.config(outputs=outputs), seconds=12) as daemon:
        with run.fault("the output's disk full for 5 s (a 4 MiB tmpfs)"):
            filler = fill(small_disk, leave=0)
            wait_for(lambda: FAILED in daemon.messages(), what="the disk-full error")
            pause_for(5)
            filler.unlink()
        run.recovered()
        run.finish(daemon)
    assert daemon.messages().count(FAILED) == 1


SYSLOG_TCP = 'module(load="imtcp")\ninput(type="imtcp" address="127.0.0.1" port="{port}")'
SYSLOG_OUTPUT = """
[[outputs]]
name = "syslog"
type = "syslog"
address = "tcp://127.0.0.1:{port}"
facility = "mail"

[[routes]]
format = "trace"
output = "syslog"
"""
PAD = 6000  # each message padded (below rsyslog's 8 KiB limit), so the kernel's socket buffers fill while the receiver stalls


def syslog_records(rsyslog: Rsyslog) -> Outcome:
    """The trace records rsyslog received; a message that is not one whole record is torn."""
    records, torn = [], []
    for message in rsyslog.received():
        text = message["msg"].strip()
        try:
            record, end = json.JSONDecoder().raw_decode(text)
            assert text[end:] == " " + "x" * PAD
            records.append(record)
        except (ValueError, AssertionError):
            torn.append(text[:200])
    return Outcome(records, torn)


def test_a_stalled_syslog_receiver_loses_nothing_and_the_amqp_connection_stays_up(
        run: FaultRun, workdir: Path) -> None:
    with Rsyslog(workdir / "rsyslog", SYSLOG_TCP) as rsyslog:
        run.read = lambda: syslog_records(rsyslog)
        config = run.config(outputs=SYSLOG_OUTPUT.replace("{port}", str(rsyslog.port)))
        trace = workdir / "formats" / "trace.j2"
        trace.write_text(trace.read_text().rstrip("\n") + f' {{{{ "x" * {PAD} }}}}\n')
        with run.start(config, seconds=15, emails=2000) as daemon:
            with run.fault("the syslog receiver (rsyslog, TCP) stopped (SIGSTOP) until the acks stop, then 5 s more"):
                rsyslog.signal(signal.SIGSTOP)
                # the kernel's socket buffers take megabytes first: the stall bites once they are full
                wait_for(lambda: FAILED in daemon.messages(), timeout=30, what="backpressure: the acks stop")
                pause_for(5)
                rsyslog.signal(signal.SIGCONT)
            run.recovered()
            run.finish(daemon)
    assert RECONNECTING not in daemon.messages(), "the AMQP connection dropped during the stall"
    assert queue_depth(run.url, "results") == 0
