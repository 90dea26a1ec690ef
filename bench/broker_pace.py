#!/usr/bin/env python3
"""How fast the broker feeds a consumer that spends a fixed CPU time per message.

  .venv/bin/python bench/broker_pace.py [--costs 0,8,12,16,20] [--prefetch 1000] …

A pika consumer like the null peer (BlockingConnection, the given prefetch, a multiple ack
every 500) that spins for COST µs on every delivery, draining the bench corpus loaded
into the bench queue (purged first!). For each cost it prints the wall rate, the CPU a
message really took (pika's own share included) and how busy the consumer was. Set
beside `bench/run`'s end-to-end rows, it shows where a contender's wall rate is set by
its own CPU and where by the broker's pace (see README "Performance").
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pika

import measure


def drain(url: str, queue: str, messages: int, cost_us: float, prefetch: int) -> tuple[float, float]:
    """Consume `messages`, spinning `cost_us` on each: (wall seconds, CPU seconds) from the first delivery."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    seen, started, cpu_started = 0, 0.0, 0.0
    for method, _properties, _body in channel.consume(queue, inactivity_timeout=10):
        if method is None:
            raise measure.BenchError(f"the queue ran dry after {seen} of {messages} messages")
        if seen == 0:
            started, cpu_started = time.perf_counter(), time.process_time()
        until = time.perf_counter() + cost_us / 1e6
        while time.perf_counter() < until:  # the stand-in for decoding, rendering and writing
            pass
        seen += 1
        if seen % 500 == 0 or seen == messages:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if seen == messages:
            break
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    channel.cancel()
    connection.close()
    return wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--costs", default="0,8,12,16,20", help="µs of CPU to spend per message, comma-separated")
    p.add_argument("--prefetch", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--url", default="amqp://guest:guest@localhost:5672/%2F")
    p.add_argument("--queue", default="logship-bench", help="the queue to use (purged!)")
    p.add_argument("--work", default="/var/tmp/logship-bench", help="where bench/run keeps its corpus")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    corpus = measure.corpus(work, args.messages)
    broker = measure.Broker(args.url, args.queue)
    print("| spin µs/msg | msg/s (wall) | CPU µs/msg | busy |\n| --- | --- | --- | --- |")
    for round_number in range(args.rounds):
        for cost in (float(c) for c in args.costs.split(",")):
            broker.load(corpus)
            wall, cpu = drain(args.url, args.queue, args.messages, cost, args.prefetch)
            print(f"| {cost:g} | {args.messages / wall:,.0f} | {cpu / args.messages * 1e6:.1f} | "
                  f"{cpu / wall:.0%} |", flush=True)


if __name__ == "__main__":
    main()
