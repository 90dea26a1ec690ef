"""What the exporter and systemd's STATUS read of a running daemon: its shape, not the Daemon class.

The daemon wires the metrics and the notifier in; they only read it. Naming the shape here
keeps the imports one way (daemon -> metrics, daemon -> status, never back).
"""
from __future__ import annotations

from collections import Counter
from typing import Protocol

from ..broker.nodes import Nodes
from ..broker.topology import QueueWatch
from ..config.queues import Queue
from ..config.load import Config
from ..stats import Stats


class ConsumerState(Protocol):
    """The consuming loop's counters and state."""

    queues: tuple[Queue, ...]
    nodes: Nodes
    consuming: bool
    deliveries: Counter[tuple[str, str]]   # (queue, received|acked|rejected)
    queue_messages: dict[str, int]
    watch: QueueWatch                      # capped queues at their cap, and how often they were
    reconnects: int
    rejected: int
    last_ack_time: float
    last_error: tuple[float, str] | None
    output_error: str | None
    tick_interval: float

    @property
    def in_hand(self) -> int:
        """Deliveries received and not yet settled."""


class PipelineState(Protocol):
    """The pipeline's counters."""

    stats: Stats


class DaemonState(Protocol):
    """A running daemon as its observers see it."""

    config: Config
    consumer: ConsumerState
    pipeline: PipelineState
    reloads: Counter[str]
    reopens: int
    last_reload_ok: bool
    last_reload_success: float
