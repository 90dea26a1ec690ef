"""The Prometheus endpoint scraped while the real daemon consumes from the test node."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from helpers import (TRACE_OUTPUT, RunningDaemon, expected_attempts, line_count, metrics_url, publish,
                     queue_depth, scrape, traffic, wait_for, write_config)
from logship import __version__
from logship.settings import load
from logship.broker.consumer import SAMPLE_EVERY, Consumer
from logship.errors import ConfigError

SAMPLES = Path(__file__).parent / "samples"
READY = ("logship_queue_messages", (("queue", "results"),))
# One JSON line per record; the recipient "boom@..." makes it fail, to count render errors.
TRACE = ('{% if message.recipient.startswith("boom@") %}{{ 1 // 0 }}{% endif %}'
         '{{ {"recipient": message.recipient, "attempt": record.attempt_number} | json }}\n')


def test_a_bad_listen_address_is_a_config_error_naming_the_key(tmp_path):
    config = write_config(tmp_path, "amqp://localhost/", '[metrics]\nlisten = "localhost"\n')
    with pytest.raises(ConfigError, match="metrics.listen"):
        load(config)


def test_metrics_are_off_unless_listen_is_set(workdir):
    routes = '[[outputs]]\nname = "all"\ntype = "file"\npath = "all.log"\n[[routes]]\nformat = "json"\noutput = "all"\n'
    config = write_config(workdir, "amqp://localhost/", routes)
    assert load(config, {}).metrics.address is None
    config.write_text(config.read_text() + '\n[metrics]\nlisten = "[::1]:9108"\n')
    assert load(config, {}).metrics.address == ("::1", 9108)


def test_a_taken_metrics_port_is_a_clear_error_not_a_traceback(workdir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (workdir / "formats" / "trace.j2").write_text(TRACE)
        config = write_config(workdir, "amqp://127.0.0.1:1/", TRACE_OUTPUT + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
        result = subprocess.run([sys.executable, "-m", "logship.cli", "run", "--config", str(config)],
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"logship: metrics: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.broker
def test_counters_scraped_during_a_run_match_what_was_published_and_written(workdir, vhost_url):
    events = traffic(2500, seed=5)
    boom = json.loads((SAMPLES / "dns-failure.json").read_text())
    bad = [{"queue": "results", "body": {**boom, "recipient": f"boom@{i}.example"}} for i in range(2)]
    bad.append({"queue": "results", "body": (SAMPLES / "not-json.txt").read_bytes()})
    published = Counter(e["queue"] for e in events)
    (workdir / "formats" / "trace.j2").write_text(TRACE)
    config = write_config(workdir, vhost_url, TRACE_OUTPUT + '\n[metrics]\nlisten = "127.0.0.1:0"\n')
    config.write_text(config.read_text().replace("prefetch = 1000", "prefetch = 100\nbatch_size = 20"))
    output = workdir / "log" / "all.jsonl"
    expected = len(expected_attempts(events))
    publish(vhost_url, events + bad)
    started = time.time()
    with RunningDaemon(config) as daemon:
        url = metrics_url(daemon)
        seen = [0.0]  # the written counter, scraped mid-stream
        backlog: list[float] = []  # the first sample of the results queue's ready messages
        deadline = time.monotonic() + 60
        while seen[-1] < expected and time.monotonic() < deadline:
            sample = scrape(url)
            seen.append(sample[("logship_records_written_total", (("format", "trace"), ("output", "all")))])
            assert seen[-1] <= line_count(output), "a record counted before it was in the file"
            backlog += [sample[READY]] if READY in sample and not backlog else []
        assert len(set(seen)) >= 3 and seen == sorted(seen), seen
        assert backlog and backlog[0] > 100, "the backlog taken at the start is the published messages less prefetch"
        wait_for(lambda: scrape(url).get(READY) == 0, timeout=15, what="the backlog sampled as 0")
        wait_for(lambda: queue_depth(vhost_url, "results") + queue_depth(vhost_url, "retry") == 0,
                 timeout=10, what="the broker to count the acks")
        wait_for(lambda: scrape(url)[("logship_unacked_deliveries", ())] == 0, what="everything settled")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "outputs reopened" in daemon.messages(), what="the reload")
        final = scrape(url)
        assert daemon.stop() == 0
    lines = line_count(output)
    assert lines == expected > 2500
    assert final[("logship_records_written_total", (("format", "trace"), ("output", "all")))] == lines

    def deliveries(queue: str, outcome: str) -> float:
        return final[("logship_deliveries_total", (("outcome", outcome), ("queue", queue)))]

    assert deliveries("results", "acked") == published["results"]
    assert deliveries("retry", "acked") == published["retry"]
    assert deliveries("results", "quarantined") == 3 and deliveries("results", "rejected") == 0
    assert deliveries("retry", "quarantined") == deliveries("retry", "rejected") == 0
    for queue in ("results", "retry"):  # each delivery settled is counted under one outcome
        assert sum(deliveries(queue, o) for o in ("acked", "quarantined", "rejected")) == \
            final[("logship_deliveries_received_total", (("queue", queue),))]
    assert final[("logship_deliveries_received_total", (("queue", "results"),))] == published["results"] + 3
    assert final[("logship_render_errors_total", (("format", "trace"),))] == 2
    assert final[("logship_reloads_total", (("outcome", "ok"),))] == 1
    assert final[("logship_config_last_reload_successful", ())] == 1
    assert started < final[("logship_config_last_reload_success_timestamp_seconds", ())] < time.time()
    assert final[("logship_output_reopens_total", ())] == 1
    assert final[("logship_broker_connected", ())] == 1
    assert final[("logship_output_backlog_records", (("output", "all"),))] == 0
    assert final[("logship_output_failing", (("output", "all"),))] == 0
    assert final[("logship_output_failing", (("output", "quarantine"),))] == 0
    assert started < final[("logship_last_ack_timestamp_seconds", ())] < time.time()
    assert final[("logship_broker_reconnects_total", ())] == 0
    assert final[READY] == final[("logship_queue_messages", (("queue", "retry"),))] == 0
    flushes = final[("logship_output_flush_duration_seconds_count", (("output", "all"),))]
    assert 0 < flushes == final[("logship_output_flush_duration_seconds_bucket", (("le", "+Inf"), ("output", "all")))]
    assert 0 < final[("logship_output_flush_duration_seconds_sum", (("output", "all"),))] < flushes * 10
    info = [labels for name, labels in final if name == "logship_build_info"]
    assert [dict(labels)["version"] for labels in info] == [__version__]
    assert set(dict(info[0])) == {"version", "python", "pika"}


@pytest.mark.broker
def test_a_format_broken_on_disk_counts_as_a_failed_reload_and_a_fixed_one_as_ok(workdir, vhost_url):
    (workdir / "formats" / "trace.j2").write_text(TRACE)
    config = write_config(workdir, vhost_url, TRACE_OUTPUT + '\n[metrics]\nlisten = "127.0.0.1:0"\n')
    with RunningDaemon(config) as daemon:
        url = metrics_url(daemon)
        wait_for(lambda: scrape(url)[("logship_broker_connected", ())] == 1, what="consuming")
        (workdir / "formats" / "trace.j2").write_text("{{ broken")  # the watcher reloads on its own
        wait_for(lambda: scrape(url)[("logship_reloads_total", (("outcome", "failed"),))] == 1,
                 what="a failed reload")
        failed = scrape(url)
        (workdir / "formats" / "trace.j2").write_text(TRACE + " ")
        wait_for(lambda: scrape(url)[("logship_reloads_total", (("outcome", "ok"),))] == 1, what="an ok reload")
        fixed = scrape(url)
        assert daemon.stop() == 0
    success = ("logship_config_last_reload_success_timestamp_seconds", ())
    assert failed[("logship_config_last_reload_successful", ())] == 0
    assert fixed[("logship_config_last_reload_successful", ())] == 1
    assert failed[success] < fixed[success]
    assert fixed[("logship_output_reopens_total", ())] == 0  # a reload on its own reopens nothing


class BrokenConnection:
    """A connection whose channels cannot be opened: what a sample meets when the broker refuses."""

    def __init__(self) -> None:
        self.calls = 0

    def channel(self) -> object:
        self.calls += 1
        raise OSError("refused")


def test_a_failed_queue_sample_leaves_the_figure_unknown_and_is_tried_again_later(workdir):
    (workdir / "formats" / "trace.j2").write_text(TRACE)
    config = load(write_config(workdir, "amqp://localhost/", TRACE_OUTPUT), {})
    consumer = Consumer(config.broker, config.queues, pipeline=None)  # type: ignore[arg-type]
    consumer.queue_messages["results"] = 7  # a figure from an earlier sample
    connection = BrokenConnection()
    consumer._sample_queues(connection)  # raises nothing
    assert consumer.queue_messages == {} and connection.calls == 1
    consumer._sample_queues(connection)
    assert connection.calls == 1, f"sampled again within {SAMPLE_EVERY} s"
