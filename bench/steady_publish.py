#!/usr/bin/env python3
"""Publish corpus messages at a steady rate, each stamped with the time it was sent.

  steady_publish.py URL QUEUE CORPUS RATE SECONDS

Every millisecond or so it publishes the messages that are due, each body prefixed with
`"bench_sent": <time.time()>`, persistent like load_queue.py. Prints
"published <n> messages in <s>s".
"""
from __future__ import annotations

import sys
import time

import pika


def main() -> None:
    url, queue, corpus, rate, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
    with open(corpus, "rb") as f:
        bodies = [line.rstrip(b"\n") for _, line in zip(range(int(rate * seconds)), f)]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    props = pika.BasicProperties(content_type="application/json", delivery_mode=2)
    start = time.monotonic()
    sent = 0
    while sent < len(bodies):
        due = min(len(bodies), int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            stamp = b'{"bench_sent":%.6f,' % time.time()
            channel.basic_publish("", queue, stamp + bodies[sent][1:], props)
            sent += 1
        connection.process_data_events(0)
        time.sleep(0.001)
    connection.close()
    print(f"published {sent} messages in {time.monotonic() - start:.3f}s")


if __name__ == "__main__":
    main()
