"""A MailerQ-like publisher: the team's generated results, published to RabbitMQ as a given MailerQ would."""
from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pika

#: MailerQ's own password in its config file: it must never reach logship's files
MAILERQ_PASSWORD = "mq-s3cret-do-not-copy"

#: the layouts the tests publish in, as the settings of MailerQ's config file
LAYOUTS: dict[str, dict[str, str]] = {
    "5.13 default exchange": {"rabbitmq-exchange": "", "rabbitmq-results": "results", "rabbitmq-success": "",
                              "rabbitmq-failure": "", "rabbitmq-retry": "retry"},
    "5.13 named exchange": {"rabbitmq-exchange": "mailerq", "rabbitmq-results": "results",
                            "rabbitmq-success": "", "rabbitmq-failure": "", "rabbitmq-retry": "retry"},
    "5.15 retries queue": {"rabbitmq-exchange": "mailerq", "rabbitmq-success": "success",
                           "rabbitmq-failure": "failures", "rabbitmq-retries": "retries"},
    "5.15 retries to the outbox": {"rabbitmq-exchange": "mailerq", "rabbitmq-success": "success",
                                   "rabbitmq-failure": "failures", "rabbitmq-retries": "outbox"},
    "5.15 gzip": {"rabbitmq-exchange": "mailerq", "rabbitmq-success": "success", "rabbitmq-failure": "failures",
                  "rabbitmq-retries": "retries", "rabbitmq-encoding": "gzip"},
}


class MailerQ:
    """Publishes as MailerQ does: to its exchange, routing key = the configured queue name for the kind of result."""

    def __init__(self, url: str, settings: dict[str, str]) -> None:
        self.url, self.settings = url, settings
        self.exchange = settings.get("rabbitmq-exchange", "")
        self.new = "rabbitmq-retries" in settings  # 5.15 and later: no results, no retry; retries instead
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()  # every publish waits for the broker's ack: a refusal raises
        self.published: Counter[str] = Counter()  # per routing key

    def config_file(self, path: Path) -> Path:
        """MailerQ's config file for these settings, naming this broker with MailerQ's own user and password."""
        parts = self.url.split("@", 1)[1]  # host:port/vhost
        lines = [f"rabbitmq-address: amqp://mailerq:{MAILERQ_PASSWORD}@{parts}", "rabbitmq-outbox: outbox"]
        lines += [f"{key}: {value}" for key, value in self.settings.items()]
        path.write_text("# MailerQ\n" + "\n".join(lines) + "\n")
        return path

    def queues(self) -> list[str]:
        """The queues MailerQ declares: its outbox and each result queue named in its config."""
        keys = ("rabbitmq-retries", "rabbitmq-success", "rabbitmq-failure") if self.new else \
            ("rabbitmq-results", "rabbitmq-success", "rabbitmq-failure", "rabbitmq-retry")
        return list(dict.fromkeys(["outbox", *(self.settings.get(k) for k in keys if self.settings.get(k))]))

    def declare(self) -> None:
        """Declare as MailerQ does: its exchange (when named) and its queues, bound with their own names."""
        if self.exchange:
            self.channel.exchange_declare(self.exchange, "direct", durable=True)
        for queue in self.queues():
            self.channel.queue_declare(queue, durable=True)
            if self.exchange:
                self.channel.queue_bind(queue, self.exchange, routing_key=queue)

    def key(self, kind: str) -> str:
        """The routing key MailerQ publishes a kind of result with ('' when it publishes none)."""
        setting = {"retry": "rabbitmq-retries" if self.new else "rabbitmq-retry",
                   "results": "" if self.new else "rabbitmq-results",
                   "success": "rabbitmq-success", "failures": "rabbitmq-failure"}[kind]
        return self.settings.get(setting, "") if setting else ""

    def publish(self, events: list[dict[str, Any]]) -> int:
        """Publish the generated events as this MailerQ would, each one confirmed; returns how many."""
        zipped = self.settings.get("rabbitmq-encoding") == "gzip"
        props = pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                     content_encoding="gzip" if zipped else None)
        sent = 0
        for event in events:
            key = self.key(event["queue"])
            if not key:
                continue
            body = json.dumps(event["body"]).encode()
            # a nack (a queue refusing the publish) raises pika.exceptions.NackError
            self.channel.basic_publish(self.exchange, key, gzip.compress(body) if zipped else body, props)
            self.published[key] += 1
            sent += 1
        return sent

    def close(self) -> None:
        """Close the publisher's connection."""
        if self.connection.is_open:
            self.connection.close()


class OtherConsumer:
    """Another program already consuming MailerQ's queue (a bounce processor): counts what it gets."""

    def __init__(self, url: str, queue: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.received = 0
        self.channel.basic_consume(queue, self._on_message)

    def _on_message(self, channel: Any, method: Any, _properties: Any, _body: bytes) -> None:
        self.received += 1
        channel.basic_ack(method.delivery_tag)

    def pump(self, seconds: float = 0.05) -> None:
        """Take what the broker has for it (the test's own thread: no thread to leak)."""
        self.connection.process_data_events(time_limit=seconds)

    def close(self) -> None:
        """Stop consuming."""
        if self.connection.is_open:
            self.connection.close()
