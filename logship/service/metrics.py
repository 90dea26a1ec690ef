"""The Prometheus exposition of the daemon's counters, read at scrape time."""
from __future__ import annotations

import logging
import platform
import threading
from typing import TYPE_CHECKING, Iterator

from ..stats import Durations
from .attempt_metrics import attempt_families

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from wsgiref.simple_server import WSGIServer

    from .observed import DaemonState

log = logging.getLogger("logship")


class DaemonCollector:
    """Reads the daemon's counters at scrape time (the hot path never touches Prometheus)."""

    def __init__(self, daemon: DaemonState) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        """Every logship_* family, from one consistent-enough look at the counters."""
        yield from self._deliveries()
        yield from self._records()
        yield from self._outputs()
        yield from self._state()
        yield from attempt_families(self.daemon.pipeline.stats.attempts)

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
        at_cap = GaugeMetricFamily("logship_queue_at_cap", "1 while a capped queue's sampled depth is at its "
                                   "max_length: the broker is dropping its oldest messages, whose records are "
                                   "lost (logship was away or behind for too long), else 0", labels=["queue"])
        reached = CounterMetricFamily("logship_queue_cap_reached", "Times a queue was found at its max_length "
                                      "(at a connect or a sample): records were dropped", labels=["queue"])
        for queue in consumer.queues:  # the counter for every queue (0 uncapped), so that the family is always there
            reached.add_metric([queue.name], consumer.watch.cap_reached[queue.name])
            if queue.max_length is not None:
                at_cap.add_metric([queue.name], 1 if queue.name in consumer.watch.at_cap else 0)
        deliveries, depths = dict(consumer.deliveries), dict(consumer.queue_messages)
        for queue in [q.name for q in consumer.queues]:
            received.add_metric([queue], deliveries.get((queue, "received"), 0))
            settled.add_metric([queue, "acked"], deliveries.get((queue, "acked"), 0))
            # the pipeline refuses a delivery only once the quarantine holds its body
            settled.add_metric([queue, "quarantined"], deliveries.get((queue, "rejected"), 0))
            settled.add_metric([queue, "rejected"], 0)
            if queue in depths and consumer.consuming:  # unknown while disconnected: no stale figure
                ready.add_metric([queue], depths[queue])
        yield from (received, settled, ready, at_cap, reached)

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

    def __init__(self, daemon: DaemonState, host: str, port: int) -> None:
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
