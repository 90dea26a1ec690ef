"""`logship check --broker`: every node reached, and each queue as the broker has it, changing nothing."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Literal

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from ..config.broker import Broker, mask
from ..config.queues import Queue
from .connection import describe, parameters
from .topology import argument_key, mismatch, shared_warning

# What a node that will not have us looks like: the credentials or the vhost are refused
REFUSED = (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError,
           pika.exceptions.AuthenticationError)


@dataclass
class Report:
    """What the broker said: lines to print, warnings, problems (each names the config key), nodes reached."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    reached: int = 0
    refused: int = 0


def check(file: str, broker: Broker, queues: tuple[Queue, ...]) -> Literal["ok", "problem", "unavailable"]:
    """Probe and print: lines on stdout, warnings and problems (naming `file` and the key) on stderr."""
    report = probe(broker, queues)
    print("\n".join(report.lines))
    for warning in report.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    for problem in report.problems:
        print(f"logship: config error: {file}: {problem}", file=sys.stderr)
    if not report.reached:
        print(f"logship: no node of the broker answered ({broker.display_url})", file=sys.stderr)
        return "problem" if report.refused else "unavailable"
    return "problem" if report.problems else "ok"


def probe(broker: Broker, queues: tuple[Queue, ...]) -> Report:
    """Connect to every node; look at each queue on the first that answers."""
    report, first = Report(), None
    for url in broker.urls:
        connection = _connect(broker, url, report)
        if connection is not None and first is None:
            first = connection
        elif connection is not None:
            connection.close()
    if first is None:
        return report
    try:
        for i, queue in enumerate(queues):
            _queue(first, queue, f"queues[{i}]", report)
    finally:
        first.close()
    return report


def _connect(broker: Broker, url: str, report: Report) -> pika.BlockingConnection | None:
    """A connection to one node, or None with the reason in the report."""
    try:
        connection = pika.BlockingConnection(parameters(broker, url))
    except REFUSED as error:
        report.refused += 1
        report.lines.append(f"node {mask(url)}: refused logship's user: {describe(error)} "
                            "(broker.url's user, its password, its permissions on the vhost)")
        return None
    except (pika.exceptions.AMQPError, OSError) as error:
        report.lines.append(f"node {mask(url)}: unreachable: {describe(error)}")
        return None
    # what the node said as it opened the connection (pika keeps it on the connection beneath)
    version = getattr(getattr(connection, "_impl", None), "server_properties", {}).get("version", b"?")
    report.reached += 1
    report.lines.append(f"node {mask(url)}: reachable (RabbitMQ {_text(version)})")
    return connection


def _queue(connection: pika.BlockingConnection, queue: Queue, key: str, report: Report) -> None:
    """One queue: exists or will be declared, arguments, bindings' exchanges, depth, consumers."""
    ok = _ask(connection, lambda ch: ch.queue_declare(queue.name, passive=True).method)
    if isinstance(ok, pika.exceptions.ChannelClosedByBroker):
        if queue.declare:
            report.lines.append(f"queue {queue.name}: does not exist yet; logship declares it as it connects "
                                f"({_arguments(queue)})")
        else:
            report.problems.append(f"{key}.name: queue {queue.name!r} does not exist, and logship does not "
                                   "declare it: the publisher (MailerQ) creates it as it starts; or a name to "
                                   "check")
        _bindings(connection, queue, key, report)
        return
    report.lines.append(f"queue {queue.name}: exists, {ok.message_count} messages ready, "
                        f"{ok.consumer_count} consumers")
    if queue.declare:
        _same_arguments(connection, queue, key, report)
    warning = shared_warning(queue, ok.consumer_count)
    if warning:
        report.warnings.append(warning)
    if queue.max_length is not None and ok.message_count >= queue.max_length:
        report.warnings.append(f"queue {queue.name!r} is at its cap ({queue.max_length} messages): its oldest "
                               "are being dropped")
    _bindings(connection, queue, key, report)


def _same_arguments(connection: pika.BlockingConnection, queue: Queue, key: str, report: Report) -> None:
    """Declare an existing queue as the config does: RabbitMQ refuses it when an argument differs."""
    done = _ask(connection, lambda ch: ch.queue_declare(queue.name, durable=True, arguments=queue.arguments))
    if isinstance(done, pika.exceptions.ChannelClosedByBroker):
        if done.reply_code == 406:
            report.problems.append(f"{key}.{argument_key(done.reply_text)}: {mismatch(queue.name, done.reply_text)}")
        else:
            report.problems.append(f"{key}.declare: the broker refused to declare {queue.name!r}: "
                                   f"{done.reply_text} (logship's user needs configure on it)")
    else:
        report.lines.append(f"queue {queue.name}: its arguments are the config's ({_arguments(queue)})")


def _bindings(connection: pika.BlockingConnection, queue: Queue, key: str, report: Report) -> None:
    """What can be checked of each binding over AMQP: that its exchange exists."""
    for j, binding in enumerate(queue.bind):
        found = _ask(connection, lambda ch: ch.exchange_declare(binding.exchange, passive=True))
        if isinstance(found, pika.exceptions.ChannelClosedByBroker):
            report.problems.append(f"{key}.bind[{j}].exchange: no exchange {binding.exchange!r} on this vhost: "
                                   "MailerQ declares its rabbitmq-exchange as it starts; check the name")
            continue
        report.lines.append(f"queue {queue.name}: bound to exchange {binding.exchange} (it exists) with routing "
                            f"key {binding.routing_key!r}, made again at every connect; AMQP cannot list "
                            "bindings: `rabbitmqctl list_bindings` shows them")


def _ask(connection: pika.BlockingConnection, question: Callable[[BlockingChannel], object]) -> object:
    """The answer to one question on a channel of its own; a refusal (the broker closes the channel) is returned."""
    channel = connection.channel()
    try:
        answer = question(channel)
    except pika.exceptions.ChannelClosedByBroker as error:
        return error
    channel.close()
    return answer


def _arguments(queue: Queue) -> str:
    """A queue's declared arguments, as RabbitMQ names them."""
    return ", ".join(f"{name} {value}" for name, value in queue.arguments.items())


def _text(value: object) -> str:
    """A server property as text."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
