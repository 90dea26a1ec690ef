"""The consuming loop: qos, batched acks, failover between nodes (pika is known here, in frames.py and connection.py)."""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

import pika
import pika.exceptions

from . import frames, topology
from .connection import delivery_count, parameters, raised_by_pika, settings
from .connection import describe as _describe
from .batches import Batches
from .nodes import Nodes
from ..config.broker import Broker
from ..config.queues import Queue
from ..pipeline import Pipeline, new_delivery
from ..render.record import Source

log = logging.getLogger("logship")

# What a lost broker looks like; each of these ends in a reconnect.
BROKER_ERRORS = (pika.exceptions.AMQPError, ConnectionError, OSError)

# The queues' ready messages (logship_queue_messages) are sampled this often: a passive
# declare per queue on a channel of its own, between two loop turns, never per delivery.
SAMPLE_EVERY = 5.0



class ConsumerCancelled(Exception):
    """The broker cancelled a consumer (its queue was deleted)."""


class Consumer(Batches):
    """Consumes the configured queues into a pipeline; acks once the outputs hold the records."""

    def __init__(self, broker: Broker, queues: Iterable[Queue], pipeline: Pipeline,
                 on_tick: Callable[[], None] | None = None,
                 on_consuming: Callable[[], None] | None = None) -> None:
        self.broker, self.queues, self.pipeline = broker, tuple(queues), pipeline
        self.on_tick, self.on_consuming = on_tick, on_consuming
        self.stopping = False
        self._reconnect = False  # new broker settings: finish the batch, then connect anew
        self.connection: pika.BlockingConnection | None = None
        self.nodes = Nodes(broker.urls, broker.reconnect_max)
        self._start_batches()
        self.watch = topology.QueueWatch()  # depths, capped queues found full, shared queues
        self.queue_messages = self.watch.messages  # ready messages per queue, at the last sample
        self._sample_channel: pika.adapters.blocking_connection.BlockingChannel | None = None
        self._sample_at = 0.0
        self.last_error: tuple[float, str] | None = None  # (time, text), for STATUS= and metrics
        self.consuming = False
        self.reconnects = 0
        self.tick_interval = 1.0   # the longest the loop waits between on_tick calls

    def run(self) -> None:
        """Consume until stop(); a lost node hands over to the next, with a capped backoff per full round."""
        try:
            while not self.stopping:
                try:
                    self._consume()
                except (*BROKER_ERRORS, ConsumerCancelled) as error:
                    if self.stopping:
                        break
                    self._lost(error)
                except Exception as error:  # pika's own failure on a dead connection is a lost one too
                    if not raised_by_pika(error):
                        raise  # a bug of logship's own: surface it
                    if self.stopping:
                        break
                    self._lost(error)
        finally:
            self._close_quietly()

    def _lost(self, error: BaseException) -> None:
        """Note the failed or lost node, close, and go on to the next one (after the backoff, at a round's end)."""
        node, description = self.nodes.display(), _describe(error)
        delay = self.nodes.failed()
        self.last_error, self.reconnects = (time.time(), description), self.reconnects + 1
        log.warning("reconnecting to the broker", extra={"error": description, "node": node,
                                                         "next": self.nodes.display(), "retry_in": round(delay, 1)})
        self._close_quietly()
        self._sleep(delay)

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, ack it and return (signal-safe)."""
        self.stopping = True
        self.wake()

    def reconfigure(self, broker: Broker, queues: Iterable[Queue]) -> bool:
        """Take new settings; True when they need a new connection (made after this batch)."""
        queues = tuple(queues)
        same = settings(self.broker) == settings(broker) and queues == self.queues
        self.broker, self.queues = broker, queues
        self.nodes.cap = broker.reconnect_max
        if same:
            return False
        log.info("broker settings changed; reconnecting after the batch in hand",
                 extra={"broker": broker.display_url, "queues": [q.name for q in queues]})
        self.nodes.retarget(broker.urls)
        self._reconnect = True
        return True

    def wake(self) -> None:
        """Make the loop turn now rather than at its next timeout (thread-safe)."""
        connection = self.connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(lambda: None)  # wake the loop
            except Exception:
                pass

    def _consume(self) -> None:
        """One connection's life: set up, loop, and on stop settle the last batch."""
        self._reconnect = False
        self.connection = connection = pika.BlockingConnection(parameters(self.broker, self.nodes.url))
        if not frames.install(connection):
            log.info("pika's internals are not the expected ones; reading the socket as pika does",
                     extra={"pika": pika.__version__})
        channel = connection.channel()
        channel.basic_qos(prefetch_count=self.broker.prefetch)
        channel.add_on_cancel_callback(self._on_cancel)
        self._pending.clear()
        self._sample_at, self._sample_channel = 0.0, None  # sampled at the new connection's first turn
        for i, queue in enumerate(self.queues):  # a queue that exists with other arguments: ConfigError
            state = topology.prepare(channel, queue, f"queues[{i}]", self.nodes.display())
            self.watch.seen(queue, state.messages, state.consumers)
            channel.basic_consume(queue.name, self._callback(channel, queue))
        failover = self.nodes.connected()
        log.info("consuming", extra={"broker": self.nodes.display(), "nodes": len(self.nodes.urls),
                                     "failover": failover, "queues": [q.name for q in self.queues]})
        self.consuming = True
        if self.on_consuming:
            self.on_consuming()
        while not (self.stopping or self._reconnect):
            held = len(self._pending)
            connection.process_data_events(time_limit=self._wait())
            if len(self._pending) > held:  # once a turn, not once a delivery
                self._last_arrival = time.monotonic()
            if channel.is_closed:  # the broker closed it (a protocol error): its deliveries are requeued
                raise pika.exceptions.ChannelWrongStateError("the broker closed the channel")
            self._settle(channel, force=False)
            self._sample_queues(connection)
            if self.on_tick:
                self.on_tick()
        self._finish(channel)

    def _callback(self, channel: object, queue: Queue) -> Callable[..., None]:
        """The on-message callback for one queue."""
        sources: dict[tuple[str, bool, int | None], Source] = {}  # one per routing key, not one per delivery
        received = (queue.name, "received")

        def on_message(_channel: object, method: object, properties: object, body: bytes) -> None:
            headers = properties.headers  # type: ignore[attr-defined]
            count = delivery_count(headers) if headers else None
            key = (method.routing_key, method.redelivered, count)  # type: ignore[attr-defined]
            source = sources.get(key)
            if source is None:
                if len(sources) > 1000:  # a publisher with endless routing keys: do not grow
                    sources.clear()
                # not redelivered: delivered 0 times before, whatever the queue keeps; a classic
                # queue counts nothing, so its redeliveries' count is unknown (empty in a format)
                count = key[2] if key[2] is not None or key[1] else 0
                source = sources[key] = Source(queue.name, queue.scope, queue.final, key[0], key[1], count)
            delivery = new_delivery((body, source, properties.content_encoding, None))  # type: ignore[attr-defined]
            ok = self.pipeline.handle(delivery)
            if not self._pending:
                self._first_pending = time.monotonic()
            self._pending.append((method.delivery_tag, ok, queue.name))  # type: ignore[attr-defined]
            self.deliveries[received] += 1
        return on_message

    def _sample_queues(self, connection: pika.BlockingConnection) -> None:
        """Every SAMPLE_EVERY seconds, the ready messages of each queue; a failure leaves consuming alone."""
        now = time.monotonic()
        if now < self._sample_at:
            return
        self._sample_at = now + SAMPLE_EVERY
        try:
            if self._sample_channel is None or not self._sample_channel.is_open:
                self._sample_channel = connection.channel()
            for queue in self.queues:
                declared = self._sample_channel.queue_declare(queue.name, passive=True)
                self.watch.seen(queue, declared.method.message_count)
        except Exception as error:  # a lost connection shows in the loop's next turn, not here
            self._sample_channel = None
            self.queue_messages.clear()  # unknown rather than stale
            log.debug("queue sample failed", extra={"error": _describe(error)})

    def _on_cancel(self, frame: object) -> None:
        """The broker cancelled us (queue deleted): reconnect instead of hanging silently."""
        raise ConsumerCancelled("the broker cancelled a consumer; was a queue deleted?")

    def _finish(self, channel: object) -> None:
        """On stop: settle what is in hand (retrying briefly), then close; the rest is requeued."""
        deadline = time.monotonic() + 10
        while self._pending and time.monotonic() < deadline:
            self._settle(channel, force=True)
            if self._pending:
                self.connection.sleep(0.1)  # type: ignore[union-attr]  # heartbeats, no new dispatch
        self._close_quietly()

    def _close_quietly(self) -> None:
        """Close the connection if it is open; unacked deliveries return to their queues."""
        connection, self.connection = self.connection, None
        self._pending.clear()
        self.consuming = False
        self.nodes.in_use = None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception as error:  # closing a half-dead connection: pika may fail in any way
                if not (isinstance(error, BROKER_ERRORS) or raised_by_pika(error)):
                    raise

    def _sleep(self, seconds: float) -> None:
        """Sleep in small steps so stop() is noticed."""
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.1, end - time.monotonic()))
            if self.on_tick:
                self.on_tick()
