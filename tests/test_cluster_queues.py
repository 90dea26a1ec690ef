"""Queue types and node lists against the run's single RabbitMQ node: quorum and classic alike, declarations, dead nodes."""
from __future__ import annotations

import json

import pika
import pytest

from broker import free_port
from cluster import publish_confirmed, trace_config
from helpers import RunningDaemon, expected_attempts, line_count, metrics_url, queue_depth, scrape, traffic, wait_for

pytestmark = pytest.mark.broker


def declare(url: str, queue: str, arguments: dict[str, object]) -> None:
    """Declare `queue` durable with `arguments`, as a publisher would."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().queue_declare(queue, durable=True, arguments=arguments)
    connection.close()


def test_a_dead_first_node_is_passed_over_and_the_log_and_metrics_name_the_node_in_use(workdir, vhost_url):
    dead = vhost_url.replace(vhost_url.split("@")[1].split("/")[0], f"127.0.0.1:{free_port()}")
    queues = '[[queues]]\nname = "results"\ndeclare = true\n'
    config = trace_config(workdir, [dead, vhost_url], queues, '\n[metrics]\nlisten = "127.0.0.1:0"\n')
    with RunningDaemon(config) as daemon:
        url = metrics_url(daemon)
        wait_for(lambda: "consuming" in daemon.messages(), what="consuming")
        sample = scrape(url)
        assert daemon.stop() == 0
    masked = [u.replace("guest:guest@", "guest:***@") for u in (dead, vhost_url)]
    assert sample[("logship_broker_node", (("url", masked[0]),))] == 0
    assert sample[("logship_broker_node", (("url", masked[1]),))] == 1
    assert sample[("logship_broker_failovers_total", ())] == 0  # the first connection is no failover
    lost = next(e for e in daemon.log() if e["message"] == "reconnecting to the broker")
    assert (lost["node"], lost["next"], lost["retry_in"]) == (masked[0], masked[1], 0)
    consuming = next(e for e in daemon.log() if e["message"] == "consuming")
    assert consuming["broker"] == masked[1] and consuming["nodes"] == 2
    assert "guest:guest" not in daemon.log_path.read_text()


def test_quorum_and_classic_queues_are_consumed_alike_and_a_quorum_queue_counts_deliveries(workdir, vhost_url):
    queues = ('[[queues]]\nname = "results"\ndeclare = true\ntype = "quorum"\n'
              '[[queues]]\nname = "retry"\ndeclare = true\ntype = "classic"\n')
    declare(vhost_url, "results", {"x-queue-type": "quorum"})   # the publisher declares them too, alike
    declare(vhost_url, "retry", {"x-queue-type": "classic"})
    events = traffic(200, seed=3)
    publish_confirmed(vhost_url, events)
    connection = pika.BlockingConnection(pika.URLParameters(vhost_url))  # a message of each delivered once before
    channel = connection.channel()
    for queue in ("results", "retry"):
        method, _props, _body = channel.basic_get(queue)
        channel.basic_nack(method.delivery_tag, requeue=True)
    connection.close()
    expected = expected_attempts(events)
    output = workdir / "log" / "all.jsonl"
    with RunningDaemon(trace_config(workdir, vhost_url, queues)) as daemon:
        wait_for(lambda: line_count(output) >= len(expected), what=f"{len(expected)} records")
        assert daemon.stop() == 0
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted((r["recipient"], r["attempt"], r["time"]) for r in written) == expected
    counts = {(r["queue"], r["count"], r["redelivered"]) for r in written}
    assert ("results", 1, True) in counts and ("results", 0, False) in counts
    assert {(c, r) for q, c, r in counts if q == "retry"} == {(0, False), (None, True)}  # classic: no count kept
    assert queue_depth(vhost_url, "results") == 0 and queue_depth(vhost_url, "retry") == 0


@pytest.mark.parametrize("existing, configured, difference", [
    ({"x-queue-type": "classic"}, 'type = "quorum"', "queues[0].type"),
    ({"x-queue-type": "quorum"}, 'type = "quorum"\nsingle_active = true', "queues[0].single_active"),
])
def test_a_queue_that_exists_with_other_arguments_is_a_config_error_naming_queue_and_difference(
        workdir, vhost_url, existing, configured, difference):
    declare(vhost_url, "results", existing)
    config = trace_config(workdir, vhost_url, f'[[queues]]\nname = "results"\ndeclare = true\n{configured}\n')
    with RunningDaemon(config) as daemon:
        assert daemon.process.wait(timeout=60) == 78
    stderr = daemon.log_path.read_text()
    assert f"logship: config error: {vhost_url.replace('guest:guest', 'guest:***')}: {difference}: " in stderr
    assert "queue 'results' already exists with other arguments" in stderr
    assert "inequivalent arg" in stderr and "Traceback" not in stderr
