"""When the consumer settles a batch: full, its interval over, or the broker quiet (a stand-in channel and clock).

The real broker's side of this is in test_daemon_broker.py (the end of a burst is acked early).
"""
from __future__ import annotations

import pytest

from logship.broker import consumer as consumer_module
from logship.config.broker import Broker
from logship.broker.consumer import Consumer


class Outputs:
    """A pipeline stand-in that counts flushes."""

    def __init__(self) -> None:
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


class Channel:
    """A channel stand-in that keeps the acks it is given."""

    def __init__(self) -> None:
        self.acks: list[int] = []

    def basic_ack(self, tag: int, multiple: bool) -> None:
        self.acks.append(tag)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The consumer's monotonic clock, set by the test (now[0])."""
    now = [1000.0]
    monkeypatch.setattr(consumer_module.time, "monotonic", lambda: now[0])
    return now


def consumer_holding(deliveries: int, first: float, last: float) -> tuple[Consumer, Outputs]:
    """A consumer with `deliveries` in hand, the first received at `first`, the last turn with any at `last`."""
    outputs = Outputs()
    consumer = Consumer(Broker(batch_size=100, batch_interval=1.0), [], outputs)  # type: ignore[arg-type]
    consumer._pending = [(tag, True, "results") for tag in range(1, deliveries + 1)]
    consumer._first_pending, consumer._last_arrival = first, last
    return consumer, outputs


def test_a_trickle_waits_for_the_interval_while_deliveries_keep_coming(clock):
    consumer, outputs = consumer_holding(5, first=1000.0, last=1000.55)
    clock[0] = 1000.6  # 0.05 s since the last delivery: less than a fifth of the interval
    channel = Channel()
    consumer._settle(channel, force=False)
    assert (outputs.flushes, channel.acks) == (0, [])
    assert consumer._wait() == pytest.approx(0.15)  # the next poll ends when the quiet would be over


def test_a_quiet_broker_settles_the_batch_before_its_interval(clock):
    consumer, outputs = consumer_holding(5, first=1000.0, last=1000.5)
    clock[0] = 1000.71
    channel = Channel()
    consumer._settle(channel, force=False)
    assert (outputs.flushes, channel.acks) == (1, [5])
    assert consumer.in_hand == 0


def test_the_interval_still_caps_a_batch_that_never_goes_quiet(clock):
    consumer, outputs = consumer_holding(5, first=1000.0, last=1000.99)
    clock[0] = 1000.995
    assert consumer._wait() == pytest.approx(0.005)  # the interval ends before the quiet would
    clock[0] = 1001.0
    channel = Channel()
    consumer._settle(channel, force=False)
    assert (outputs.flushes, channel.acks) == (1, [5])


def test_a_full_batch_is_settled_at_once(clock):
    consumer, outputs = consumer_holding(100, first=1000.0, last=1000.0)
    channel = Channel()
    consumer._settle(channel, force=False)
    assert (outputs.flushes, channel.acks) == (1, [100])
