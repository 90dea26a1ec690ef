"""Counts kept on the hot path as plain integers, and their Prometheus exposition."""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from wsgiref.simple_server import WSGIServer

    from .daemon import Daemon

log = logging.getLogger("logship")


@dataclass
class Stats:
    """What the pipeline did: records per (output, format), quarantines, render errors."""

    buffered: Counter[tuple[str, str]] = field(default_factory=Counter)  # in a sink, not yet durable
    written: Counter[tuple[str, str]] = field(default_factory=Counter)   # flushed: durable
    quarantined: Counter[str] = field(default_factory=Counter)           # per queue
    render_errors: Counter[str] = field(default_factory=Counter)         # per format

    def flushed(self, output: str) -> None:
        """The output's buffered records are durable now."""
        for key in [key for key in self.buffered if key[0] == output]:
            self.written[key] += self.buffered.pop(key)

    def backlog(self) -> Counter[str]:
        """Records per output that are buffered but not yet durable."""
        backlog: Counter[str] = Counter()
        for (output, _format), n in list(self.buffered.items()):
            backlog[output] += n
        return backlog

    def written_total(self) -> int:
        """Every record made durable so far."""
        return sum(list(self.written.values()))


class DaemonCollector:
    """Reads the daemon's counters at scrape time (the hot path never touches Prometheus)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        """Every logship_* family, from one consistent-enough look at the counters."""
        yield from self._deliveries()
        yield from self._records()
        yield from self._state()

    def _deliveries(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily
        consumer, stats = self.daemon.consumer, self.daemon.pipeline.stats
        received = CounterMetricFamily("logship_deliveries_received", "Deliveries taken from each queue",
                                       labels=["queue"])
        settled = CounterMetricFamily("logship_deliveries", "Deliveries settled: acked (records durable), "
                                      "rejected (sent to the dead-letter exchange) or quarantined (raw body "
                                      "kept in the quarantine file)", labels=["queue", "outcome"])
        deliveries = dict(consumer.deliveries)
        for queue in [q.name for q in consumer.queues]:
            received.add_metric([queue], deliveries.get((queue, "received"), 0))
            for outcome in ("acked", "rejected"):
                settled.add_metric([queue, outcome], deliveries.get((queue, outcome), 0))
            settled.add_metric([queue, "quarantined"], stats.quarantined.get(queue, 0))
        yield received
        yield settled

    def _records(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        stats, config = self.daemon.pipeline.stats, self.daemon.config
        written = CounterMetricFamily("logship_records_written", "Records durably written, per output and "
                                      "format", labels=["output", "format"])
        counts = dict(stats.written)
        for route in config.routes:
            counts.setdefault((route.output, route.format), 0)
        for (output, fmt), n in sorted(counts.items()):
            written.add_metric([output, fmt], n)
        errors = CounterMetricFamily("logship_render_errors", "Deliveries quarantined because a format "
                                     "failed to render them", labels=["format"])
        for fmt, n in sorted(dict(stats.render_errors).items()):
            errors.add_metric([fmt], n)
        backlog = GaugeMetricFamily("logship_output_backlog_records", "Records handed to an output but not "
                                    "yet durable (grows while an output fails)", labels=["output"])
        pending = stats.backlog()
        for output in [o.name for o in config.outputs]:
            backlog.add_metric([output], pending.get(output, 0))
        yield from (written, errors, backlog)

    def _state(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        daemon, consumer = self.daemon, self.daemon.consumer
        reloads = CounterMetricFamily("logship_reloads", "Reloads (SIGHUP)", labels=["outcome"])
        for outcome in ("ok", "failed"):
            reloads.add_metric([outcome], daemon.reloads.get(outcome, 0))
        yield reloads
        yield CounterMetricFamily("logship_broker_reconnects", "Times the broker connection was lost",
                                  value=consumer.reconnects)
        yield GaugeMetricFamily("logship_broker_connected", "1 while connected and consuming, else 0",
                                value=1 if consumer.consuming else 0)
        yield GaugeMetricFamily("logship_output_failing", "1 while an output fails and acks are held back",
                                value=1 if consumer.output_error else 0)
        yield GaugeMetricFamily("logship_unacked_deliveries", "Deliveries in hand, not yet acked or rejected",
                                value=consumer.in_hand)
        yield GaugeMetricFamily("logship_seconds_since_last_ack", "Seconds since the last ack (or since "
                                "start); grows on an idle queue too", value=time.monotonic() - consumer.last_ack)


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
