#!/usr/bin/env python3
"""Publish generated MailerQ traffic to its queues, as MailerQ would.

  publish.py URL TRAFFIC.jsonl [QUEUE ...]

TRAFFIC.jsonl holds {"queue": NAME, "body": MESSAGE} lines (mailerq_results.py's output).
Only lines for the named queues are published (all queues when none are named); each
queue is declared durable first. Prints how many messages went to each queue.
"""
from __future__ import annotations

import json
import sys
from collections import Counter

import pika


def main(argv: list[str]) -> int:
    """Publish the file's lines to their queues."""
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    url, path, wanted = argv[0], argv[1], set(argv[2:])
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    sent: Counter[str] = Counter()
    properties = pika.BasicProperties(content_type="application/json", delivery_mode=2)
    with open(path, encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            queue = event["queue"]
            if wanted and queue not in wanted:
                continue
            if queue not in sent:
                channel.queue_declare(queue, durable=True)
            body = json.dumps(event["body"], ensure_ascii=False).encode()
            channel.basic_publish("", queue, body, properties)
            sent[queue] += 1
    connection.close()
    print(", ".join(f"{n} to {q}" for q, n in sorted(sent.items())) or "nothing published")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
