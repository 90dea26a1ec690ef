"""Numbered MailerQ traffic and a publisher that keeps publishing through the faults, as MailerQ would."""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import pika
import pika.exceptions

from helpers import scaled, traffic

QUEUES = ("results", "retry")
FEED_NAME = "fault-feed"  # the publisher's connection name, so a test never closes it by mistake


def numbered_traffic(emails: int, seed: int) -> list[dict[str, Any]]:
    """The results and retry messages of `emails` generated e-mails, each body carrying its e-mail's number `n`.

    A retry message and the final result of one e-mail share the number, so (n, attempt) names
    one delivery attempt whichever queue brought it.
    """
    events = [e for e in traffic(emails, seed=seed) if e["queue"] in QUEUES]
    numbers: dict[str, int] = {}
    for event in events:
        event["body"]["n"] = numbers.setdefault(event["body"]["recipient"], len(numbers))
    return events


def expected(events: list[dict[str, Any]]) -> set[tuple[int, int]]:
    """Every attempt of every e-mail, (n, attempt number), from the final results."""
    return {(e["body"]["n"], i + 1) for e in events if e["queue"] == "results"
            for i in range(len(e["body"]["results"]))}


class Feed(threading.Thread):
    """Publishes the events persistent, confirmed, mandatory, a chunk at a time: traffic during the fault.

    Like MailerQ it publishes a message again when the broker nacks it, returns it (its queue is
    gone) or the connection drops before the confirm. A nacked or unconfirmed one may then be
    queued twice: it goes to `maybe_twice`, which the oracle allows to be written twice. A
    returned one was queued nowhere, so it cannot.
    """

    def __init__(self, url: str, events: list[dict[str, Any]], chunk: int = 50, pause: float = 0.05) -> None:
        super().__init__(name="fault-feed", daemon=True)
        self.url, self.events, self.chunk, self.pause = url, events, chunk, pause
        self.sent = 0
        self.maybe_twice: set[int] = set()   # numbers of e-mails one of whose messages may be queued twice
        self.reconnects = 0
        self.error: BaseException | None = None
        self.running = threading.Event()     # cleared: hold on (the test empties a queue meanwhile)
        self.running.set()
        self.idle = threading.Event()        # set while held
        self.stopped = threading.Event()
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None

    def run(self) -> None:
        try:
            props = pika.BasicProperties(content_type="application/json", delivery_mode=2)
            for number, event in enumerate(self.events):
                if number % self.chunk == 0:
                    time.sleep(self.pause)
                while not self.running.is_set():
                    self.idle.set()
                    if self.stopped.wait(0.1):
                        return
                self.idle.clear()
                if self.stopped.is_set():
                    return
                self._publish(event, json.dumps(event["body"]).encode(), props)
                self.sent += 1
        except BaseException as error:  # the test asserts there was none
            self.error = error
        finally:
            self._close()

    def _publish(self, event: dict[str, Any], body: bytes, props: pika.BasicProperties) -> None:
        """One confirmed publish, again until the broker takes it."""
        deadline = time.monotonic() + scaled(180)
        while time.monotonic() < deadline and not self.stopped.is_set():
            try:
                if self._channel is None:
                    self._open()
                self._channel.basic_publish("", event["queue"], body, props, mandatory=True)
                return
            except pika.exceptions.UnroutableError:
                time.sleep(0.2)  # its queue is gone (deleted): nothing was queued, publish again
            except pika.exceptions.NackError:
                self.maybe_twice.add(event["body"]["n"])
                time.sleep(0.2)
            except (pika.exceptions.AMQPError, OSError):
                self.maybe_twice.add(event["body"]["n"])  # lost before the confirm: maybe queued
                self.reconnects += 1
                self._close()
                time.sleep(0.5)
        raise AssertionError(f"could not publish message {event['body']['n']} for {scaled(180):g} s")

    def _open(self) -> None:
        """Connect (by name, directly to the node: never through a proxy) with publisher confirms."""
        params = pika.URLParameters(self.url)
        params.client_properties = {"connection_name": FEED_NAME}
        params.connection_attempts = 1
        self._connection = pika.BlockingConnection(params)
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()

    def _close(self) -> None:
        """Close the connection, whatever state it is in."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError):
                pass

    def hold(self) -> None:
        """Stop publishing after the message in hand (returns once it is confirmed or failed)."""
        self.running.clear()
        while not self.idle.wait(0.1) and self.is_alive():
            pass

    def resume(self) -> None:
        """Publish again after hold()."""
        self.running.set()

    def hurry(self) -> None:
        """Publish the rest without the pauses between chunks (the fault is over: no need to wait for it)."""
        self.pause = 0.0

    def finish(self, timeout: float = 240) -> int:
        """Wait for the last message (`timeout` scaled); how many were published. An error in the thread fails the test."""
        self.join(scaled(timeout))
        assert not self.is_alive(), "the publisher did not finish"
        assert self.error is None, f"publishing failed: {self.error!r}"
        return self.sent

    def abandon(self) -> None:
        """Stop now (a test that failed midway), joining the thread."""
        self.stopped.set()
        self.running.set()
        self.join(scaled(30))
