"""The deliverability families: attempts by provider, sending IP and status class, and their lag."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from ..render.deliverability import OUTCOMES
from ..config.providers import OTHER

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..stats import Attempts

COUNTED = "counted once when the flush before its delivery's ack succeeds, whatever routes take it"


def attempt_families(attempts: Attempts) -> Iterator[Metric]:
    """The four logship_attempt* families, read at scrape time from the plain counts."""
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
    by_provider = CounterMetricFamily(
        "logship_attempts", f"Delivery attempts by outcome and the recipient domain's mailbox provider "
        f"(the shipped table and [metrics.providers]; other for the rest), {COUNTED}", labels=["outcome", "provider"])
    providers, sources, statuses = attempts.families()  # one snapshot: the three families agree
    counts, names = dict(providers), attempts.labels.names if attempts.labels else ()
    for key in sorted({*counts, *((o, p) for p in (*names, OTHER) for o in OUTCOMES)}):
        by_provider.add_metric(list(key), counts.get(key, 0))  # every provider from the start: rates exist
    by_source = CounterMetricFamily(
        "logship_attempts_by_source", f"Delivery attempts by outcome and sending IP (the attempt's `from`; "
        f"other past metrics.max_sources, none without one), {COUNTED}", labels=["outcome", "source_ip"])
    for key, n in sorted(sources.items()):
        by_source.add_metric(list(key), n)
    by_status = CounterMetricFamily(
        "logship_attempts_by_status", f"Delivery attempts by outcome and enhanced status class and subject "
        f"(4.7 for 4.7.28; none without a valid one), {COUNTED}", labels=["outcome", "status"])
    for key, n in sorted(statuses.items()):
        by_status.add_metric(list(key), n)
    lag = HistogramMetricFamily(
        "logship_attempt_lag_seconds", "Seconds from an attempt's own time (MailerQ's, to the second) to its "
        "records being written; attempts without a readable time are left out")
    lag.add_metric([], attempts.lag.cumulative(), attempts.lag.sum)
    yield from (by_provider, by_source, by_status, lag)
