"""Queues and bindings on the broker: declared and bound again on every connect, their depth and consumers watched."""
from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from ..config.queues import Queue
from ..errors import ConfigError

log = logging.getLogger("logship")

# What the broker says when a declaration differs from the queue: our key for each argument
ARGUMENT_KEYS = {"x-queue-type": "type", "x-single-active-consumer": "single_active", "durable": "declare",
                 "x-max-length": "max_length", "x-max-length-bytes": "max_length_bytes",
                 "x-overflow": "max_length", "x-message-ttl": "message_ttl"}


@dataclass(frozen=True)
class QueueState:
    """What the broker said of a queue as it was declared: messages ready, and consumers other than us."""

    messages: int
    consumers: int


def prepare(channel: BlockingChannel, queue: Queue, key: str, node: str) -> QueueState:
    """Declare and bind `queue` when the config says so, else look it up; its depth and consumers before ours.

    Made on every connect: a failover to another node, or a queue deleted meanwhile, finds it
    as the config says. A queue declared elsewhere is only looked up (passive), never changed.
    """
    if not queue.declare:
        ok = channel.queue_declare(queue.name, passive=True).method
        return QueueState(ok.message_count, ok.consumer_count)
    ok = declare(channel, queue, key, node)
    for binding in queue.bind:
        _bind(channel, queue.name, binding.exchange, binding.routing_key)
    return QueueState(ok.message_count, ok.consumer_count)


def declare(channel: BlockingChannel, queue: Queue, key: str, node: str) -> pika.spec.Queue.DeclareOk:
    """Declare `queue` (the config's `key`) as configured; one that exists with other arguments is a ConfigError.

    PRECONDITION_FAILED is the same answer on every node and every retry until someone changes
    the config or the queue, and the daemon consumes nothing meanwhile: so exit 78, not a retry loop.
    """
    try:
        return channel.queue_declare(queue.name, durable=True, arguments=queue.arguments).method
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code != 406:  # PRECONDITION_FAILED
            raise
        problem = mismatch(queue.name, error.reply_text)
        log.error("queue declaration refused", extra={"queue": queue.name, "error": problem})
        raise ConfigError(node, f"{key}.{argument_key(error.reply_text)}", problem) from None


def _bind(channel: BlockingChannel, queue: str, exchange: str, routing_key: str) -> None:
    """Bind `queue` to `exchange`; an exchange that is not there (yet) is said plainly, then a reconnect retries."""
    try:
        channel.queue_bind(queue, exchange, routing_key=routing_key)
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code == 404:  # MailerQ declares its exchange when it starts: wait for it, never make it
            log.warning("the exchange to bind to does not exist; MailerQ declares it when it starts",
                        extra={"queue": queue, "exchange": exchange, "routing_key": routing_key})
        raise


def argument_key(reply: str) -> str:
    """The config key of the argument a PRECONDITION_FAILED reply names."""
    argument = re.search(r"inequivalent arg '([^']+)'", reply)
    return ARGUMENT_KEYS.get(argument[1], "declare") if argument else "declare"


def mismatch(name: str, reply: str) -> str:
    """The broker's PRECONDITION_FAILED text as a sentence about the queue."""
    detail = reply.removeprefix("PRECONDITION_FAILED - ")
    return (f"queue {name!r} already exists with other arguments than the config declares ({detail}); "
            "RabbitMQ keeps the first declaration: change the config to match, or delete the queue "
            "(docs/cluster.md, \"Declaring queues\")")


def shared_warning(queue: Queue, consumers: int) -> str | None:
    """The warning for a queue consumed directly that other consumers already read, or None."""
    if consumers < 1 or queue.bind or queue.single_active:
        return None  # a copy of logship's own, or an active/standby pair: other logship daemons
    return (f"queue {queue.name!r} already has {consumers} other consumer{'s' if consumers > 1 else ''}: each "
            "message goes to one of them, so each sees only part of the results; give logship a copy of its "
            "own bound to the publisher's exchange (docs/mailerq.md), unless these are logship daemons "
            "sharing the load on purpose")


class QueueWatch:
    """Each queue's depth, which capped queues are full (their oldest are being dropped), and sharing warnings."""

    def __init__(self) -> None:
        self.messages: dict[str, int] = {}  # ready messages per queue, at the last look
        self.at_cap: set[str] = set()
        self.cap_reached: Counter[str] = Counter()  # times each queue was found at its cap (an episode each)

    def seen(self, queue: Queue, messages: int, consumers: int = 0) -> None:
        """Note a queue's depth (and, as we connect, its other consumers); warn once per episode at its cap."""
        self.messages[queue.name] = messages
        warning = shared_warning(queue, consumers)
        if warning:
            log.warning(warning, extra={"queue": queue.name, "consumers": consumers})
        full = queue.max_length is not None and messages >= queue.max_length
        if full and queue.name not in self.at_cap:
            self.at_cap.add(queue.name)
            self.cap_reached[queue.name] += 1
            log.warning("queue at its cap: the broker drops its oldest messages, whose records are lost",
                        extra={"queue": queue.name, "messages": messages, "max_length": queue.max_length})
        elif not full and queue.name in self.at_cap:
            self.at_cap.discard(queue.name)
            log.info("queue below its cap again", extra={"queue": queue.name, "messages": messages})
