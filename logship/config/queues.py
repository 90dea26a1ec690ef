"""The [[queues]] table: what to consume, which attempts are new, and how a queue of logship's own is declared."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ..errors import ConfigError

Scope = Literal["all", "latest", "message"]
Role = Literal["results", "success", "failures", "retry", "retries", "other"]
#: MailerQ's retry queue (up to 5.14) and a copy of its retries (5.15 and later) carry every
#: attempt so far: only the newest one is new
RETRY_ROLES = {"retry", "retries"}
#: roles a queue's name gives it when the config names none
NAMED_ROLES = ("results", "success", "failures", "retry", "retries")
#: MailerQ's queues of e-mails to send: consuming one takes mail away from MailerQ (and so
#: does its 5.15 `retries` queue, refused by its name or its role)
LIVE_QUEUES = ("outbox", "inbox")


@dataclass(frozen=True)
class Binding:
    """A binding of a queue of logship's own to the exchange a publisher (MailerQ) publishes to."""

    exchange: str
    routing_key: str

    def __post_init__(self) -> None:
        if not self.exchange:
            raise ValueError("exchange: the default exchange (empty name) cannot be bound to; with MailerQ's "
                             "rabbitmq-exchange empty, consume its queue by name instead (docs/mailerq.md)")


@dataclass(frozen=True)
class Queue:
    """One queue to consume, which of its attempts are new, and how to declare it (docs/cluster.md, docs/mailerq.md)."""

    name: str
    role: Role | None = None
    scope: Scope | None = None
    declare: bool = False  # declare the queue (durable) if it does not exist; implied by bind
    type: Literal["classic", "quorum"] | None = None  # with declare: the queue type (classic if unset)
    single_active: bool = False  # with declare: RabbitMQ's single active consumer (active/standby)
    bind: tuple[Binding, ...] = ()  # bindings made (again) on every connect: a copy of what is published
    max_length: int | None = None        # messages; past it the oldest are dropped (drop-head)
    max_length_bytes: int | None = None  # bytes of message bodies; likewise
    message_ttl: float | None = None     # seconds a message may wait before the broker drops it

    def __post_init__(self) -> None:
        role = self.role or (self.name if self.name in NAMED_ROLES else "other")
        object.__setattr__(self, "role", role)
        if self.bind:
            object.__setattr__(self, "declare", True)  # a binding needs its queue
        for key in ("type", "single_active", "max_length", "max_length_bytes", "message_ttl"):
            if getattr(self, key) and not self.declare:
                raise ValueError(f"{key}: is an argument of the queue's declaration, so it needs declare = true "
                                 "or bind (a queue declared elsewhere is consumed as it was declared)")
        for key in ("max_length", "max_length_bytes"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"{key}: must be at least 1")
        if self.message_ttl is not None and self.message_ttl < 0.001:  # RabbitMQ counts milliseconds
            raise ValueError("message_ttl: must be at least 0.001 (seconds)")

    @property
    def final(self) -> bool:
        """Whether messages on this queue carry a final result."""
        return self.role not in RETRY_ROLES

    @property
    def capped(self) -> bool:
        """Whether the queue is declared with a cap (length, bytes or age)."""
        return any(v is not None for v in (self.max_length, self.max_length_bytes, self.message_ttl))

    def describe(self) -> str:
        """The queue as `check` prints it: role, scope, bindings and caps."""
        text = f"role {self.role}, scope {self.scope}"
        for exchange in dict.fromkeys(b.exchange for b in self.bind):
            keys = ", ".join(b.routing_key for b in self.bind if b.exchange == exchange)
            text += f", bound to exchange {exchange} with {keys}"
        caps = [f"{k} {getattr(self, k)}" for k in ("max_length", "max_length_bytes", "message_ttl")
                if getattr(self, k) is not None]
        return text + (", capped at " + ", ".join(caps) if caps else "")

    @property
    def arguments(self) -> dict[str, object]:
        """The x-arguments of the queue's declaration."""
        arguments: dict[str, object] = {"x-queue-type": self.type or "classic"}
        if self.single_active:
            arguments["x-single-active-consumer"] = True
        if self.max_length is not None:
            arguments["x-max-length"] = self.max_length
        if self.max_length_bytes is not None:
            arguments["x-max-length-bytes"] = self.max_length_bytes
        if self.max_length is not None or self.max_length_bytes is not None:
            # past a cap, drop the oldest rather than refuse the publish: MailerQ is never turned away
            arguments["x-overflow"] = "drop-head"
        if self.message_ttl is not None:
            arguments["x-message-ttl"] = round(self.message_ttl * 1000)
        return arguments


def refuse_live(file: str, queues: tuple[Queue, ...]) -> None:
    """A ConfigError when a queue consumed directly (no bind) is one of MailerQ's queues of live e-mails."""
    for i, queue in enumerate(queues):
        if not queue.bind:
            try:
                _not_live(queue)
            except ValueError as error:
                key, _, problem = str(error).partition(": ")
                raise ConfigError(file, f"queues[{i}].{key}", problem) from None


def _not_live(queue: Queue) -> None:
    """A ValueError ("key: problem") when `queue` is one of MailerQ's queues of live e-mails."""
    # a queue named retries and said to be MailerQ 5.14's retry queue (role retry) is results only
    if queue.role == "retries" or (queue.name == "retries" and queue.role != "retry"):
        raise ValueError(
            f"{'role' if queue.role == 'retries' and queue.name != 'retries' else 'name'}: {queue.name!r} holds "
            "e-mails MailerQ will send again (its rabbitmq-retries): consuming it takes them away from MailerQ. "
            "Copy it into a queue of logship's own instead: name = \"logship.retries\", role = \"retries\", "
            "bind = [{ exchange = \"mailerq\", routing_key = \"retries\" }] (exchange: MailerQ's "
            "rabbitmq-exchange; routing_key: its rabbitmq-retries; docs/mailerq.md)")
    if queue.name in LIVE_QUEUES:
        raise ValueError(
            f"name: {queue.name!r} holds the e-mails MailerQ is to send: consuming it takes them away from "
            "MailerQ, and a copy would hold every e-mail, bodies included. Tap MailerQ's results instead: "
            "name = \"logship.results\", role = \"results\", bind = [{ exchange = \"mailerq\", routing_key = "
            "\"success\" }, { exchange = \"mailerq\", routing_key = \"failures\" }] (its rabbitmq-exchange, "
            "rabbitmq-success and rabbitmq-failure; the finals list every attempt; docs/mailerq.md)")


def scoped(queues: tuple[Queue, ...]) -> tuple[Queue, ...]:
    """Fill in each queue's default scope from its role and its neighbours.

    A retry queue's message holds every attempt so far: only the newest is new (`latest`).
    A final queue's message holds them all: every one is new (`all`), unless a retry queue
    is consumed too, which has already written every attempt but the last (`latest`).
    """
    with_retry = any(q.role in RETRY_ROLES for q in queues)

    def default(q: Queue) -> Scope:
        return "latest" if q.role in RETRY_ROLES or (with_retry and q.role != "other") else "all"
    return tuple(q if q.scope else replace(q, scope=default(q)) for q in queues)


def warnings(queues: tuple[Queue, ...]) -> list[str]:
    """Queue settings that are legal but probably unintended."""
    roles = {q.role for q in queues}
    found = []
    if "results" in roles and roles & {"success", "failures"}:
        found.append("results and success/failures both consumed: every final result is written twice "
                     "unless routes select queues")
    for i, queue in enumerate(queues):
        if queue.bind and not (queue.max_length or queue.max_length_bytes):
            found.append(f"queues[{i}] ({queue.name!r}) is bound to an exchange with no max_length or "
                         "max_length_bytes: while logship is stopped it grows until RabbitMQ's memory or disk "
                         "alarm blocks every publisher, MailerQ included (docs/mailerq.md sizes a cap)")
        keys = {b.routing_key for b in queue.bind}
        if queue.name in keys:
            found.append(f"queues[{i}] ({queue.name!r}) is bound with its own name as routing key: that is "
                         f"the publisher's own queue; give logship's copy a name of its own (logship.{queue.name})")
        if keys & {"outbox", "inbox"}:
            found.append(f"queues[{i}] ({queue.name!r}) copies MailerQ's outbox: every e-mail it is to send, "
                         "bodies included, most of them no result at all")
    return found
