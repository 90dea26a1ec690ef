#!/usr/bin/env python3
"""Reload latency of the real daemon: from a format's save to the first record in the new format.

  bench/reload_latency.py [--url AMQP_URL] [--saves 40] [--method rename|in-place|symlink] [--rate 300]

Runs `logship run` on a temporary folder while publishing a steady stream of result messages
(--rate a second) to a fresh `results` queue, saves a new version of the format --saves times
and prints p50/p95/max of the latency. The latency of one save is the `received_epoch` of the
first record rendered by the new version minus the time the save finished, both on this
machine's clock. Without --url a private RabbitMQ node is started (tests/broker.py).
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pika

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = (ROOT / "tests" / "samples" / "dns-failure.json").read_bytes()


def version(n: int) -> str:
    return f"v{n}|{{{{ record.received_epoch }}}}|v{n}\n"


def save(folder: Path, text: str, method: str) -> None:
    """Write the format the way an editor or a deployer would."""
    if method == "in-place":
        with open(folder / "lat.j2", "w") as f:
            f.write(text)
    elif method == "rename":
        (folder / "lat.j2.tmp").write_text(text)
        os.replace(folder / "lat.j2.tmp", folder / "lat.j2")
    else:  # the Kubernetes ConfigMap swap
        data = folder / f"..{time.monotonic_ns()}"
        data.mkdir()
        (data / "lat.j2").write_text(text)
        (folder / "..data_tmp").symlink_to(data.name)
        os.replace(folder / "..data_tmp", folder / "..data")
        if not (folder / "lat.j2").is_symlink():
            (folder / "lat.j2.link").symlink_to("..data/lat.j2")
            os.replace(folder / "lat.j2.link", folder / "lat.j2")


def publish_steadily(url: str, rate: int, stop: threading.Event) -> None:
    """One persistent result message every 1/rate s until `stop`."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    props = pika.BasicProperties(content_type="application/json", delivery_mode=2)
    while not stop.is_set():
        channel.basic_publish("", "results", SAMPLE, props)
        connection.process_data_events(0)
        time.sleep(1 / rate)
    connection.close()


def first_epoch(output: Path, offset: int, n: int, timeout: float = 5.0) -> tuple[float | None, int]:
    """The received_epoch of the first line of version n at or after `offset`, and the new offset."""
    prefix = f"v{n}|".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(output, "rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            if line.startswith(prefix):
                return float(line.split(b"|")[1]), offset + end
        offset += end
        time.sleep(0.005)
    return None, offset


def run(url: str, saves: int, method: str, rate: int) -> list[float]:
    """The latencies of `saves` saves against a running daemon."""
    folder = Path(tempfile.mkdtemp(prefix="logship-reload-bench-"))
    formats = folder / "formats"
    formats.mkdir()
    save(formats, version(0), method)
    (folder / "logship.toml").write_text(
        f'[broker]\nurl = "{url}"\n\n[[queues]]\nname = "results"\ndeclare = true\n\n'
        '[[outputs]]\nname = "out"\ntype = "file"\npath = "out.log"\nsync = "never"\n\n'
        '[[routes]]\nformat = "lat"\noutput = "out"\n')
    daemon = subprocess.Popen([sys.executable, "-m", "logship.cli", "run", "--config", str(folder / "logship.toml")],
                              cwd=ROOT, stderr=open(folder / "logship.stderr", "wb"))
    stop = threading.Event()
    publisher = threading.Thread(target=publish_steadily, args=(url, rate, stop))
    output, offset, latencies = folder / "out.log", 0, []
    try:
        while not output.exists() or output.stat().st_size == 0:
            if not publisher.is_alive() and not stop.is_set():
                publisher.start()
            time.sleep(0.1)
        for n in range(1, saves + 1):
            time.sleep(0.5)
            save(formats, version(n), method)
            saved = time.time()
            epoch, offset = first_epoch(output, offset, n)
            latencies.append(epoch - saved if epoch is not None else float("inf"))
    finally:
        stop.set()
        if publisher.is_alive():
            publisher.join()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    return latencies


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="AMQP URL of a broker to use (default: start a private node)")
    p.add_argument("--saves", type=int, default=40)
    p.add_argument("--method", choices=["rename", "in-place", "symlink"], default="rename")
    p.add_argument("--rate", type=int, default=300, help="messages published a second")
    args = p.parse_args()
    node = None
    url = args.url
    if url is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from broker import RabbitNode
        node = RabbitNode()
        node.start()
        url = node.vhost_url(node.new_vhost())
    try:
        latencies = sorted(run(url, args.saves, args.method, args.rate))
    finally:
        if node:
            node.cleanup()
    missed = sum(1 for x in latencies if x == float("inf"))
    seen = [x for x in latencies if x != float("inf")]
    p95 = latencies[max(0, int(round(0.95 * len(latencies))) - 1)]
    print(f"reload latency, {args.method}, {len(latencies)} saves at {args.rate} msg/s: "
          f"p50 {statistics.median(seen) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
          f"max {max(seen) * 1000:.0f} ms, never seen {missed}")
    return 0 if missed == 0 and p95 < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
