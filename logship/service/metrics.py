"""Counts kept on the hot path as plain integers, and their Prometheus exposition."""
from __future__ import annotations

import bisect
import logging
import platform
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from wsgiref.simple_server import WSGIServer

    from .daemon import Daemon

log = logging.getLogger("logship")

#: upper bounds of the flush duration buckets: a write and fdatasync take from well under
#: a millisecond (page cache, SSD) to seconds (a saturated disk, a remote receiver)
FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Durations:
    """A histogram as plain counts: observing is a bisect and two additions, once per flush."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(FLUSH_BUCKETS) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration in the first bucket whose bound is at least `seconds`."""
        self.counts[bisect.bisect_left(FLUSH_BUCKETS, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, count) pairs as Prometheus wants them, +Inf last."""
        counts, total, out = list(self.counts), 0, []
        for bound, n in zip([*map(str, FLUSH_BUCKETS), "+Inf"], counts):
            total += n
            out.append((bound, total))
        return out


@dataclass
class Stats:
    """What the pipeline did: records per (output, format), quarantines, render errors, flushes."""

    buffered: Counter[tuple[str, str]] = field(default_factory=Counter)  # in a sink, not yet durable
    written: Counter[tuple[str, str]] = field(default_factory=Counter)   # flushed: durable
    quarantined: Counter[str] = field(default_factory=Counter)           # per queue
    render_errors: Counter[str] = field(default_factory=Counter)         # per format
    # per (output, format): one route of a record failed and went to the quarantine (issue 14)
    route_failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    flushes: dict[str, Durations] = field(default_factory=dict)          # per output: flush durations
    failing: set[str] = field(default_factory=set)                       # outputs whose last flush failed

    def flushed(self, output: str, seconds: float | None = None) -> None:
        """The output's buffered records are durable now; its flush took `seconds`."""
        for key in [key for key in self.buffered if key[0] == output]:
            self.written[key] += self.buffered.pop(key)
        self.failing.discard(output)
        if seconds is not None:
            self._durations(output).observe(seconds)

    def flush_failed(self, output: str, seconds: float) -> None:
        """The output's flush raised after `seconds`: it holds the acks back until one succeeds."""
        self.failing.add(output)
        self._durations(output).observe(seconds)

    def _durations(self, output: str) -> Durations:
        """The output's flush histogram, made at its first flush."""
        durations = self.flushes.get(output)
        if durations is None:
            durations = self.flushes[output] = Durations()
        return durations

    def backlog(self) -> Counter[str]:
        """Records per output that are buffered but not yet durable."""
        backlog: Counter[str] = Counter()
        for (output, _format), n in list(self.buffered.items()):
            backlog[output] += n
        return backlog

    def written_total(self) -> int:
        """Every record made durable so far."""
        return sum(list(self.written.values()))

    def written_per_output(self) -> Counter[str]:
        """Records made durable so far, per output."""
        per_output: Counter[str] = Counter()
        for (output, _format), n in list(self.written.items()):
            per_output[output] += n
        return per_output


class DaemonCollector:
    """Reads the daemon's counters at scrape time (the hot path never touches Prometheus)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        """Every logship_* family, from one consistent-enough look at the counters."""
        yield from self._deliveries()
        yield from self._records()
        yield from self._outputs()
        yield from self._state()

    def _deliveries(self) -> Iterator[Metric]:
        """Deliveries per queue and outcome, and each queue's backlog."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        consumer = self.daemon.consumer
        received = CounterMetricFamily("logship_deliveries_received", "Deliveries taken from each queue",
                                       labels=["queue"])
        settled = CounterMetricFamily(
            "logship_deliveries", "Deliveries settled, once each: acked (every record durable in its outputs; "
            "a route that failed is in the quarantine and in logship_route_failures_total), quarantined (raw "
            "body kept in the quarantine file, then rejected without requeue to the dead-letter exchange), "
            "rejected (rejected without requeue and not quarantined: none in this version)",
            labels=["queue", "outcome"])
        ready = GaugeMetricFamily("logship_queue_messages", "Messages ready in each consumed queue (not yet "
                                  "delivered to any consumer), sampled every few seconds: how far behind "
                                  "logship is", labels=["queue"])
        deliveries, depths = dict(consumer.deliveries), dict(consumer.queue_messages)
        for queue in [q.name for q in consumer.queues]:
            received.add_metric([queue], deliveries.get((queue, "received"), 0))
            settled.add_metric([queue, "acked"], deliveries.get((queue, "acked"), 0))
            # the pipeline refuses a delivery only once the quarantine holds its body
            settled.add_metric([queue, "quarantined"], deliveries.get((queue, "rejected"), 0))
            settled.add_metric([queue, "rejected"], 0)
            if queue in depths and consumer.consuming:  # unknown while disconnected: no stale figure
                ready.add_metric([queue], depths[queue])
        yield from (received, settled, ready)

    def _records(self) -> Iterator[Metric]:
        """Records written, render errors and failed routes."""
        from prometheus_client.core import CounterMetricFamily
        stats, config = self.daemon.pipeline.stats, self.daemon.config
        written = CounterMetricFamily("logship_records_written", "Records durably written (flushed, and "
                                      "fdatasync'ed when the output syncs), per output and format",
                                      labels=["output", "format"])
        counts = dict(stats.written)
        for route in config.routes:
            counts.setdefault((route.output, route.format), 0)
        for (output, fmt), n in sorted(counts.items()):
            written.add_metric([output, fmt], n)
        errors = CounterMetricFamily("logship_render_errors", "Times a format failed to render a record "
                                     "(it raised or went over its budget); what failed went to the "
                                     "quarantine", labels=["format"])
        failed = dict(stats.render_errors)
        for fmt in sorted({*failed, *(route.format for route in config.routes)}):  # 0 before the first
            errors.add_metric([fmt], failed.get(fmt, 0))
        routes = CounterMetricFamily("logship_route_failures", "Records whose route failed (format or `when` "
                                     "raised, path refused) and went to the quarantine while the message's "
                                     "other routes were written", labels=["output", "format"])
        failures = dict(stats.route_failures)
        for output, fmt in sorted({*failures, *((route.output, route.format) for route in config.routes)}):
            routes.add_metric([output, fmt], failures.get((output, fmt), 0))
        yield from (written, errors, routes)

    def _outputs(self) -> Iterator[Metric]:
        """Each output's backlog, failing state and flush durations."""
        from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
        stats = self.daemon.pipeline.stats
        outputs = [o.name for o in self.daemon.config.outputs]
        backlog = GaugeMetricFamily("logship_output_backlog_records", "Records handed to an output but not "
                                    "yet durable (grows while an output fails)", labels=["output"])
        pending = stats.backlog()
        for output in outputs:
            backlog.add_metric([output], pending.get(output, 0))
        failing = GaugeMetricFamily("logship_output_failing", "1 while the output's last flush failed (acks "
                                    "are held back until it succeeds), else 0", labels=["output"])
        flushes = HistogramMetricFamily("logship_output_flush_duration_seconds", "Time one flush of an output "
                                        "took (write, and fdatasync when it syncs), once per batch",
                                        labels=["output"])
        durations, down = dict(stats.flushes), set(stats.failing)
        for output in [*outputs, "quarantine"]:
            failing.add_metric([output], 1 if output in down else 0)
            histogram = durations.get(output) or Durations()  # all buckets 0 before the first flush
            flushes.add_metric([output], histogram.cumulative(), histogram.sum)
        yield from (backlog, failing, flushes)

    def _state(self) -> Iterator[Metric]:
        """Reloads, reopens, the broker connection, acks and the build."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        daemon, consumer = self.daemon, self.daemon.consumer
        reloads = CounterMetricFamily("logship_reloads", "Reloads of config and formats (SIGHUP, or a "
                                      "change on disk), by outcome", labels=["outcome"])
        for outcome in ("ok", "failed"):
            reloads.add_metric([outcome], daemon.reloads.get(outcome, 0))
        yield reloads
        yield GaugeMetricFamily("logship_config_last_reload_successful", "1 when the last reload (or the "
                                "start) took all of config and formats, 0 when it kept some running version",
                                value=1 if daemon.last_reload_ok else 0)
        yield GaugeMetricFamily("logship_config_last_reload_success_timestamp_seconds", "When config and "
                                "formats last loaded without error (start or reload), Unix time",
                                value=daemon.last_reload_success)
        yield CounterMetricFamily("logship_output_reopens", "Times the output files and the quarantine "
                                  "were reopened (SIGUSR1, or SIGHUP with its reload)", value=daemon.reopens)
        yield CounterMetricFamily("logship_broker_reconnects", "Times the broker connection was lost",
                                  value=consumer.reconnects)
        yield GaugeMetricFamily("logship_broker_connected", "1 while connected and consuming, else 0",
                                value=1 if consumer.consuming else 0)
        nodes = GaugeMetricFamily("logship_broker_node", "The broker's nodes (URL, password masked): 1 "
                                  "for the one consumed from, else 0", labels=["url"])
        for i in range(len(consumer.nodes.urls)):
            nodes.add_metric([consumer.nodes.display(i)], 1 if consumer.nodes.in_use == i else 0)
        yield nodes
        yield CounterMetricFamily("logship_broker_failovers", "Times consuming resumed on another node of "
                                  "the cluster than the one before", value=consumer.nodes.failovers)
        yield GaugeMetricFamily("logship_unacked_deliveries", "Deliveries in hand, not yet acked or rejected",
                                value=consumer.in_hand)
        yield GaugeMetricFamily("logship_last_ack_timestamp_seconds", "When logship last acked or rejected "
                                "a batch (or started), Unix time; stands still on an idle queue too",
                                value=consumer.last_ack_time)
        yield _build_info()


def _build_info() -> Metric:
    """logship_build_info: 1, with the versions that explain a behaviour as labels."""
    from importlib.metadata import version

    from prometheus_client.core import GaugeMetricFamily

    from .. import __version__
    info = GaugeMetricFamily("logship_build_info", "Always 1; the versions of logship, Python and pika "
                             "as labels", labels=["version", "python", "pika"])
    info.add_metric([__version__, platform.python_version(), version("pika")], 1)
    return info


class MetricsServer:
    """The /metrics HTTP endpoint, on a thread of its own."""

    def __init__(self, daemon: Daemon, host: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.process_collector import ProcessCollector
        registry = CollectorRegistry(auto_describe=False)
        registry.register(DaemonCollector(daemon))
        ProcessCollector(registry=registry)
        self.server: WSGIServer
        self.thread: threading.Thread
        self.server, self.thread = start_http_server(port, host, registry)
        self.thread.name = "logship-metrics"
        self.address = self.server.server_address[:2]

    def close(self) -> None:
        """Stop serving and wait for the thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
