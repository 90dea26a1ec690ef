"""Against a three-node cluster: failover under load, competing daemons, single active consumer."""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pika
import pytest

from cluster import (Publisher, RabbitCluster, check_every_attempt_once, consuming_from, publish_confirmed,
                     trace_config, written)
from helpers import RunningDaemon, line_count, queue_depth, traffic, wait_for

pytestmark = pytest.mark.broker

QUORUM = ('[[queues]]\nname = "results"\ndeclare = true\ntype = "quorum"\n'
          '[[queues]]\nname = "retry"\ndeclare = true\ntype = "quorum"\n')
SINGLE_ACTIVE = QUORUM.replace('type = "quorum"\n', 'type = "quorum"\nsingle_active = true\n')
# small batches, each synced: the daemon is still busy when the node goes or the peer is killed
SLOW = "prefetch = 100\nbatch_size = 10"
BACKLOG_CONNECTIONS = 8  # confirms come one at a time per channel: several channels publish the backlog


def daemon_folder(tmp_path: Path, name: str) -> Path:
    """A folder of its own for one daemon (its config, formats, output and log)."""
    folder = tmp_path / name
    folder.mkdir()
    return folder


def slow_config(folder: Path, urls: list[str], queues: str) -> Path:
    """A trace config consuming `queues` from `urls` in small batches."""
    config = trace_config(folder, urls, queues)
    config.write_text(config.read_text().replace("prefetch = 1000", SLOW))
    return config


def empty(url: str) -> bool:
    """Whether results and retry hold no ready messages."""
    return queue_depth(url, "results") + queue_depth(url, "retry") == 0


def backlog(url: str, events: list[dict], republished: list[dict]) -> list[dict]:
    """Declare the queues as logship will (a publisher declaring too), publish most events at once; the rest.

    The backlog keeps the daemon busy, so the node stop or the kill lands while it holds deliveries.
    It is published with confirms, on several connections at once (each confirm waits for the
    queue's quorum). Unconfirmed, as it was, the quorum queues on a loaded 2-core host never came
    to hold exactly what was published (the suite timed out here waiting for "the 5716 messages
    of the backlog", and again for 5794 after 180 s): a publish the broker drops or takes twice
    says nothing without confirms, and a loss made up for by a double elsewhere would pass that
    count and surface later as a missing attempt.
    """
    connection = pika.BlockingConnection(pika.URLParameters(url))
    for queue in ("results", "retry"):
        connection.channel().queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    connection.close()
    early = events[:len(events) * 4 // 5]
    slices = [early[i::BACKLOG_CONNECTIONS] for i in range(BACKLOG_CONNECTIONS)]
    sent: list[int] = []
    errors: list[BaseException] = []

    def publish(part: list[dict]) -> None:
        try:
            sent.append(publish_confirmed(url, part, republished=republished))
        except BaseException as error:  # raised below, in the test's thread
            errors.append(error)
    threads = [threading.Thread(target=publish, args=(part,), name="test-backlog") for part in slices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"publishing the backlog failed: {errors[0]!r}"
    assert queue_depth(url, "results") + queue_depth(url, "retry") >= sum(sent), "the broker confirmed what it lost"
    return events[len(events) * 4 // 5:]


def declared(daemon: RunningDaemon) -> None:
    """Wait until the daemon consumes (and so has declared its queues)."""
    wait_for(lambda: "consuming" in daemon.messages(), timeout=60, what="the daemon consuming")


def test_the_daemon_fails_over_when_its_node_stops_and_starts_losing_nothing(cluster: RabbitCluster, tmp_path):
    vhost = cluster.new_vhost()
    urls = cluster.urls(vhost)
    folder = daemon_folder(tmp_path, "a")
    events = traffic(5000, seed=21)
    early: list[dict] = []  # backlog messages nacked, then published again: maybe queued twice
    rest = backlog(urls[1], events, early)  # the daemon starts on node 0; node 1 stays up
    with RunningDaemon(slow_config(folder, urls, QUORUM)) as daemon:
        declared(daemon)
        node = cluster.node_at(consuming_from(daemon))
        publisher = Publisher(next(u for u in urls if f":{node.port}/" not in u), rest)
        publisher.start()
        wait_for(lambda: line_count(folder / "log" / "all.jsonl") > 300, what="the first records")
        node.stop()       # while traffic flows and the daemon holds unacked deliveries
        wait_for(lambda: daemon.messages().count("consuming") >= 2, what="the failover")
        failover = consuming_from(daemon)
        node.start()
        publisher.finish()
        other = cluster.running().vhost_url(vhost)
        wait_for(lambda: empty(other), timeout=120, what="empty queues")
        assert daemon.stop() == 0  # settles the batch in hand
    assert empty(other)
    assert f":{node.port}/" not in failover
    counts = check_every_attempt_once(written(folder), events, publisher.republished + early, (folder,))
    assert sum(counts.values()) >= len(counts)
    lost = [e for e in daemon.log() if e["message"] == "reconnecting to the broker"]
    assert lost and f":{node.port}/" in lost[0]["node"] and lost[0]["retry_in"] == 0
    assert [e["failover"] for e in daemon.log() if e["message"] == "consuming"][:2] == [False, True]
    assert not any("pika's internals" in m for m in daemon.messages()), "a node's connection lacks the frame loop"


def test_two_daemons_share_the_queues_and_when_one_is_killed_the_other_finishes(cluster: RabbitCluster, tmp_path):
    vhost = cluster.new_vhost()
    urls = cluster.urls(vhost)
    first, second = daemon_folder(tmp_path, "a"), daemon_folder(tmp_path, "b")
    events = traffic(5000, seed=22)
    early: list[dict] = []
    rest = backlog(urls[2], events, early)
    with RunningDaemon(slow_config(first, urls, QUORUM)) as a:
        declared(a)
        publisher = Publisher(urls[2], rest)
        publisher.start()
        # the second joins while the first drains the backlog; it lists the nodes in another
        # order, so the two spread over the cluster
        with RunningDaemon(slow_config(second, urls[1:] + urls[:1], QUORUM)) as b:
            wait_for(lambda: line_count(second / "log" / "all.jsonl") > 100, what="the second daemon's records")
            a.process.send_signal(signal.SIGKILL)  # mid-stream: its unacked deliveries return to the queues
            a.process.wait()
            publisher.finish()
            wait_for(lambda: empty(urls[0]), timeout=120, what="empty queues")
            assert b.stop() == 0
    assert empty(urls[0])
    check_every_attempt_once(written(first, second), events, publisher.republished + early, (first, second))
    assert line_count(first / "log" / "all.jsonl") > 200 and line_count(second / "log" / "all.jsonl") > 100


def test_a_standby_takes_over_in_order_when_the_single_active_daemon_is_killed(cluster: RabbitCluster, tmp_path):
    vhost = cluster.new_vhost()
    urls = cluster.urls(vhost)
    active, standby = daemon_folder(tmp_path, "active"), daemon_folder(tmp_path, "standby")
    events = traffic(1500, seed=23)
    with RunningDaemon(slow_config(active, urls, SINGLE_ACTIVE)) as a:
        declared(a)  # the first consumer of a single-active queue is the active one
        with RunningDaemon(slow_config(standby, urls[1:] + urls[:1], SINGLE_ACTIVE)) as b:
            declared(b)
            publisher = Publisher(urls[2], events)
            publisher.start()
            wait_for(lambda: line_count(active / "log" / "all.jsonl") > 300, what="the active daemon's records")
            assert line_count(standby / "log" / "all.jsonl") == 0, "the standby took deliveries while the other lived"
            a.process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            a.process.wait()
            wait_for(lambda: line_count(standby / "log" / "all.jsonl") > 0, timeout=30, what="the standby's first record")
            takeover = time.monotonic() - killed
            publisher.finish()
            wait_for(lambda: empty(urls[0]), timeout=120, what="empty queues")
            assert b.stop() == 0
    assert empty(urls[0])
    check_every_attempt_once(written(active, standby), events, publisher.republished, (active, standby))
    assert takeover < 10, f"the standby took {takeover:.1f} s to take over"
    assert line_count(standby / "log" / "all.jsonl") > 300, "the active daemon was killed mid-stream"
    assert_in_order(written(standby), events)


def assert_in_order(lines: list[dict], events: list[dict]) -> None:
    """Each queue's messages reached the standby in the order they were published."""
    position = {(e["queue"], e["body"]["recipient"], len(e["body"]["results"])): i for i, e in enumerate(events)}
    for queue in ("results", "retry"):
        seen: dict[int, None] = {}  # each message once, the first time it came
        for r in lines:
            if r["queue"] == queue:
                seen.setdefault(position[(queue, r["recipient"], r["attempts"])])
        assert list(seen) == sorted(seen), f"{queue}: out of order"


@pytest.fixture(autouse=True)
def _no_stopped_nodes(cluster: RabbitCluster):
    """A test that stopped a node and failed midway leaves the cluster whole for the next one."""
    yield
    for node in cluster.nodes:
        if node.process is None:
            node.start()

