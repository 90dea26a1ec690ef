"""The daemon end to end against the test run's own RabbitMQ node."""
from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from pathlib import Path

import pika
import pytest

from helpers import (TRACE_OUTPUT, RunningDaemon, expected_attempts, line_count, metrics_url, publish,
                     queue_depth, scrape, traffic, wait_for, write_config)

RECORD_FORMAT = ('{{ {"recipient": message.recipient, "attempt": record.attempt_number, "time": attempt.time, '
                 '"queue": record.queue, "redelivered": record.redelivered, "outcome": record.outcome} | json }}\n')



def trace_config(workdir: Path, url: str, extra: str = "") -> Path:
    """A config writing one JSON trace line per record to log/all.jsonl."""
    (workdir / "formats" / "trace.j2").write_text(RECORD_FORMAT)
    return write_config(workdir, url, TRACE_OUTPUT + extra)


def attempts_written(path: Path) -> list[dict]:
    """The trace lines of the output file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_attempt_is_written_exactly_once_and_the_queues_end_empty(workdir, vhost_url):
    events = traffic(3000)
    published = publish(vhost_url, events)
    config = trace_config(workdir, vhost_url)
    expected = expected_attempts(events)
    output = workdir / "log" / "all.jsonl"
    with RunningDaemon(config) as daemon:
        wait_for(lambda: line_count(output) >= len(expected), what=f"{len(expected)} records")
        wait_for(lambda: queue_depth(vhost_url, "results") == 0 and queue_depth(vhost_url, "retry") == 0,
                 what="empty queues")
        assert daemon.stop() == 0
    written = sorted((r["recipient"], r["attempt"], r["time"]) for r in attempts_written(output))
    assert published > 3000
    assert written == expected
    assert queue_depth(vhost_url, "results") == 0 and queue_depth(vhost_url, "retry") == 0
    assert "consuming" in daemon.messages() and "stopped" in daemon.messages()


def test_a_broker_restart_mid_stream_loses_nothing(workdir, vhost_url, rabbit):
    # about 7,200 messages: here the daemon had written about 1,000 records when the broker was
    # gone (it was 17,000 messages, all but 1,000 of them waiting out the restart to no purpose)
    events = traffic(5000, seed=11)
    publish(vhost_url, events)
    # small batches and a per-batch fdatasync slow the daemon so the restart lands mid-stream
    config = trace_config(workdir, vhost_url)
    config.write_text(config.read_text().replace("prefetch = 1000", "prefetch = 200\nbatch_size = 20"))
    expected = expected_attempts(events)
    output = workdir / "log" / "all.jsonl"
    with RunningDaemon(config) as daemon:
        wait_for(lambda: line_count(output) > 500, what="the first records")
        rabbit.stop()  # the restart: stop, then start with the same data
        before_restart = line_count(output)  # the broker is gone: nothing more can be delivered
        rabbit.start()
        wait_for(lambda: "reconnecting to the broker" in daemon.messages(), what="the reconnect")
        wait_for(lambda: queue_depth(vhost_url, "results") == 0 and queue_depth(vhost_url, "retry") == 0,
                 timeout=120, what="empty queues after the restart")
        assert daemon.stop() == 0
    written = attempts_written(output)
    counts = Counter((r["recipient"], r["attempt"], r["time"]) for r in written)
    assert sorted(counts) == expected, "an attempt is missing"
    assert before_restart < len(expected), "the restart did not land mid-stream"
    twice = {key for key, n in counts.items() if n > 1}
    redelivered = {(r["recipient"], r["attempt"], r["time"]) for r in written if r["redelivered"]}
    assert twice <= redelivered, "a duplicate that redelivery does not explain"


@pytest.mark.parametrize("sample", ["not-json.txt", "not-a-result.json"])
def test_a_bad_body_is_quarantined_and_dead_lettered(workdir, vhost_url, sample):
    body = (Path(__file__).parent / "samples" / sample).read_bytes()
    connection = pika.BlockingConnection(pika.URLParameters(vhost_url))
    channel = connection.channel()
    channel.queue_declare("dead", durable=True)
    channel.queue_declare("retry", durable=True)
    channel.queue_declare("results", durable=True, arguments={"x-dead-letter-exchange": "",
                                                               "x-dead-letter-routing-key": "dead"})
    channel.basic_publish("", "results", body)
    channel.basic_publish("", "results", (Path(__file__).parent / "samples" / "dns-failure.json").read_bytes())
    connection.close()
    config = trace_config(workdir, vhost_url)
    config.write_text(config.read_text().replace("declare = true\n", ""))
    quarantine = workdir / "quarantine" / "quarantine.jsonl"
    with RunningDaemon(config) as daemon:
        wait_for(lambda: queue_depth(vhost_url, "dead") == 1, what="the dead-lettered message")
        wait_for(lambda: line_count(workdir / "log" / "all.jsonl") == 1, what="the good message's record")
        assert daemon.stop() == 0
    kept = json.loads(quarantine.read_text())
    assert kept["body"].encode() == body
    assert kept["queue"] == "results" and kept["reason"].startswith(("not JSON", "not a result"))
    assert queue_depth(vhost_url, "results") == 0
    assert any(e["message"] == "message quarantined" for e in daemon.log())


def test_gzip_bodies_are_decoded(workdir, vhost_url):
    body = (Path(__file__).parent / "samples" / "accepted-tls.json").read_bytes()
    props = pika.BasicProperties(content_encoding="gzip", delivery_mode=2)
    publish(vhost_url, [{"queue": "results", "body": gzip.compress(body)}], properties=props)
    config = trace_config(workdir, vhost_url)
    output = workdir / "log" / "all.jsonl"
    with RunningDaemon(config) as daemon:
        wait_for(lambda: line_count(output) == 1, what="the record")
        assert daemon.stop() == 0
    assert attempts_written(output)[0]["recipient"] == "john.doe@gmail.com"


def test_a_deleted_queue_is_noticed_and_consumption_resumes_when_it_returns(workdir, vhost_url):
    config = trace_config(workdir, vhost_url)
    output = workdir / "log" / "all.jsonl"
    sample = json.loads((Path(__file__).parent / "samples" / "dns-failure.json").read_text())
    with RunningDaemon(config) as daemon:
        wait_for(lambda: "consuming" in daemon.messages(), what="consuming")
        connection = pika.BlockingConnection(pika.URLParameters(vhost_url))
        connection.channel().queue_delete("retry")
        connection.close()
        wait_for(lambda: "reconnecting to the broker" in daemon.messages(), what="the cancel noticed")
        publish(vhost_url, [{"queue": "results", "body": sample}])  # declares retry again too
        wait_for(lambda: line_count(output) == 1, what="the record after the queue came back")
        assert daemon.stop() == 0
    reasons = [e.get("error", "") for e in daemon.log() if e["message"] == "reconnecting to the broker"]
    assert any("cancelled" in r for r in reasons)


def test_the_end_of_a_burst_is_acked_once_the_broker_goes_quiet_not_after_the_interval(workdir, vhost_url):
    # batch_interval 5 s: the burst is settled after a fifth of it (1 s) without deliveries
    config = trace_config(workdir, vhost_url, '\n[metrics]\nlisten = "127.0.0.1:0"\n')
    config.write_text(config.read_text().replace("prefetch = 1000", "prefetch = 1000\nbatch_interval = 5.0"))
    events = [e for e in traffic(30, seed=5) if e["queue"] == "results"]
    acked = ("logship_deliveries_total", (("outcome", "acked"), ("queue", "results")))
    with RunningDaemon(config) as daemon:
        url = metrics_url(daemon)
        wait_for(lambda: "consuming" in daemon.messages(), what="consuming")
        publish(vhost_url, events)
        published = time.monotonic()
        wait_for(lambda: scrape(url)[acked] == len(events), timeout=4.0,
                 what="the burst acked before its batch_interval is over")
        acked_after = time.monotonic() - published
        daemon.process.kill()  # no settling on the way out: what was not acked would return
        daemon.process.wait()
    assert 0.8 < acked_after < 4.0
    assert line_count(workdir / "log" / "all.jsonl") == len(events)  # scope latest: one record each
    assert queue_depth(vhost_url, "results") == 0
