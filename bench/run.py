#!/usr/bin/env python3
"""logship against its peers, side by side, in alternating rounds; see README "Performance".

Use bench/run (it installs what is missing and uses the checkout's .venv) rather than this file.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import measure
from measure import BENCH, LOGSHIP, PEERS, PYTHON, BenchError, Broker, Daemon, Tail

Rates = dict[str, tuple[list[float], list[float]]]  # contender: (msg/s wall, msg per CPU second) by round

TARGETS = {  # ratio of logship's median rate to the peer's, at least
    ("end to end", "naive"): 1.0, ("end to end", "null"): 0.6,
    ("replay", "naive replay"): 1.0, ("replay", "jq"): 1.0,
}
PEER_PREFETCH = 1000  # what the peers ask the broker for; the targets (RSS too) are set at it


def write_config(work: Path, name: str, url: str, queue: str, fmt: str, prefetch: int = PEER_PREFETCH,
                 sync: str = "batch") -> Path:
    """A config for one section: the bench queue in, one file output through `fmt` out."""
    path = work / f"{name}.toml"
    sync_comment = "fdatasync before each ack" if sync == "batch" else "no fdatasync: --sync never, no verdicts"
    path.write_text(f"""[broker]
url = "{url}"
prefetch = {prefetch}

[[queues]]
name = "{queue}"
role = "results"

[formats]
dir = "{BENCH / 'formats'}"

[[outputs]]
name = "{name}"
type = "file"
path = "{work / 'out' / name}.jsonl"
sync = "{sync}"   # {sync_comment}

[[routes]]
format = "{fmt}"
output = "{name}"

[quarantine]
path = "{work / 'out' / 'quarantine'}.jsonl"

[log]
level = "info"

[metrics]
listen = "127.0.0.1:0"   # on, as in the shipped production config: the hot path keeps its counters
""")
    return path


def replay_rounds(args: argparse.Namespace, work: Path, corpus: Path, reference) -> Rates:
    """logship replay, the naive replay peer and jq, each from the corpus file to a file."""
    out = work / "out"
    config = write_config(work, "replay", args.url, args.queue, args.format)
    naive = [PYTHON, str(PEERS / "peer_consumer.py"), "replay", str(corpus), str(out / "naive-replay.jsonl")]
    jq = ["jq", "-c", "-f", str(PEERS / "reference.jq"), str(corpus)]
    contenders = {
        "logship replay": (lambda: measure.run([LOGSHIP, "replay", "-c", str(config), str(corpus)])[:2],
                           out / "replay.jsonl"),
        "naive replay": (lambda: measure.run(naive)[:2], out / "naive-replay.jsonl"),
        "jq": (lambda: measure.run(jq, out / "jq.jsonl")[:2], out / "jq.jsonl"),
    }
    return alternate(args.rounds, contenders, reference, args.messages)


def e2e_rounds(args: argparse.Namespace, work: Path, corpus: Path, reference,
               expected: int, rss: list[float]) -> Rates:
    """logship run and the null and naive peers, each draining the same loaded queue."""
    out, broker = work / "out", Broker(args.url, args.queue)
    config = write_config(work, "e2e", args.url, args.queue, args.format, args.prefetch, args.sync)
    peer = [PYTHON, str(PEERS / "peer_consumer.py")]
    naive = [*peer, "naive", args.url, args.queue, str(args.messages), str(out / "naive.jsonl")]

    def loaded(run):
        def go() -> tuple[float, float]:
            broker.load(corpus)
            timing = run()
            if broker.depth() != 0:
                raise BenchError(f"{broker.depth()} messages left unacknowledged in {broker.queue}")
            return timing
        return go

    def logship() -> tuple[float, float]:
        seconds, cpu, peak = logship_e2e(config, out / "e2e.jsonl", expected)
        rss.append(peak)
        return seconds, cpu

    contenders = {
        "logship run": (loaded(logship), out / "e2e.jsonl"),
        "null": (loaded(lambda: measure.peer([*peer, "null", args.url, args.queue, str(args.messages)])), None),
        "naive": (loaded(lambda: measure.peer(naive)), out / "naive.jsonl"),
    }
    return alternate(args.rounds, contenders, reference, args.messages)


def logship_e2e(config: Path, output: Path, expected: int) -> tuple[float, float, float]:
    """Seconds from the daemon's `consuming` to the last record in the file; CPU seconds; peak RSS."""
    output.unlink(missing_ok=True)
    daemon = Daemon(config)
    start = daemon.wait_consuming()
    tail, seen = Tail(output), 0
    while seen < expected:
        if not daemon.alive() or time.perf_counter() - start > 600:
            daemon.stop()
            raise BenchError(f"logship wrote {seen} of {expected} records")
        time.sleep(0.005)
        seen += tail.count()
    seconds = time.perf_counter() - start
    peak = daemon.peak_rss_mib()
    return seconds, daemon.stop(), peak


def alternate(rounds: int, contenders: dict, reference, messages: int) -> Rates:
    """A B C, B C A, C A B …: each contender's rate (wall and per CPU second) in each round.

    The order turns each round so no contender always runs after the same neighbour (whose
    writeback, or a burst of the machine's other tenants, would bias it); outputs checked.
    """
    rates: Rates = {name: ([], []) for name in contenders}
    names = list(contenders)
    for round_number in range(1, rounds + 1):
        shift = (round_number - 1) % len(names)
        for name in names[shift:] + names[:shift]:
            run, output = contenders[name]
            if output is not None:
                output.unlink(missing_ok=True)
            seconds, cpu = run()
            if output is not None:
                measure.check_same(output, reference, name)
            rates[name][0].append(messages / seconds)
            rates[name][1].append(messages / cpu)
            print(f"  round {round_number}: {name:15} {messages / seconds:9,.0f} msg/s "
                  f"{messages / cpu:9,.0f} msg/CPU-s{'  (output checked)' if output else ''}", flush=True)
    return rates


def latency(args: argparse.Namespace, work: Path, corpus: Path) -> tuple[list[float], list[float], str]:
    """Seconds from publish to the record in the file, and from logship's receipt to the file."""
    Broker(args.url, args.queue).purge()
    output = work / "out" / "latency.jsonl"
    output.unlink(missing_ok=True)
    daemon = Daemon(write_config(work, "latency", args.url, args.queue, "latency"))
    daemon.wait_consuming()
    publisher = subprocess.Popen([PYTHON, str(BENCH / "steady_publish.py"), args.url, args.queue, str(corpus),
                                  str(args.rate), str(args.seconds)], stdout=subprocess.PIPE, text=True)
    tail, total, inside, wanted = Tail(output), [], [], int(args.rate * args.seconds)
    deadline = time.monotonic() + args.seconds + 60
    while len(total) < wanted and time.monotonic() < deadline:
        time.sleep(0.001)
        now = time.time()
        for sent, received, attempt in (line.split() for line in tail.lines()):
            if attempt == b"1":
                total.append(now - float(sent))
                inside.append(now - float(received))
    published = publisher.communicate()[0].strip()
    daemon.stop()
    if len(total) < wanted:
        raise BenchError(f"only {len(total)} of {wanted} messages reached the file")
    return total, inside, published


def reload_latency() -> str:
    """What bench/reload_latency.py (the live-formats bench, on its own private node) reports."""
    _wall, _cpu, text = measure.run([PYTHON, str(BENCH / "reload_latency.py"), "--saves", "20"])
    return text.strip().splitlines()[-1]


def percentiles(delays: list[float]) -> str:
    """p50, p99 and the maximum, in milliseconds."""
    cuts = statistics.quantiles(delays, n=100)
    return f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms, max {max(delays) * 1000:.0f} ms"


def report(section: str, rates: Rates, ours: str, judged: bool = True) -> list[str]:
    """Rows of the table: medians and rounds, then ratios against each peer with their spread."""
    lines = []
    for name, (wall, cpu) in rates.items():
        lines.append(f"| {section} | {name} | {statistics.median(wall):,.0f} | {_runs(wall)} | "
                     f"{statistics.median(cpu):,.0f} | {_runs(cpu)} |")
    for name in rates:
        if name != ours:
            judge = section if judged else None
            lines.append(f"| {section} | **{ours} / {name}** | {_ratio(rates, ours, name, 0, judge)} | "
                         f"{_ratio(rates, ours, name, 1, None)} |")
    return lines


def _runs(values: list[float]) -> str:
    return " ".join(f"{v:,.0f}" for v in values)


def _ratio(rates: Rates, ours: str, peer: str, which: int, section: str | None) -> str:
    """Ratio of the medians, the per-round range, and the target verdict when there is one."""
    mine, theirs = rates[ours][which], rates[peer][which]
    ratio = statistics.median(mine) / statistics.median(theirs)
    per_round = [a / b for a, b in zip(mine, theirs)]
    text = f"**{ratio:.2f}x** | rounds {min(per_round):.2f}–{max(per_round):.2f}x"
    target = TARGETS.get((section, peer)) if section else None
    return text + ("" if target is None else f" (target ≥ {target}x: {'met' if ratio >= target else 'MISSED'})")


def machine(args: argparse.Namespace) -> str:
    """nproc, CPU model and the broker's version."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    broker = Broker(args.url, args.queue).version() if args.sections & {"e2e", "latency"} else "not used"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"nproc {nproc}, {cpu}, {broker}, Python {sys.version.split()[0]}, load average {load}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=100_000, help="corpus size (default 100000)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per section (default 3)")
    p.add_argument("--url", default="amqp://guest:guest@localhost:5672/%2F", help="the broker (default: local)")
    p.add_argument("--queue", default="logship-bench", help="the queue the rounds use (purged!)")
    p.add_argument("--work", default="/var/tmp/logship-bench", help="corpus, configs and outputs")
    p.add_argument("--format", default="reference", help="bench/formats/NAME.j2 that logship renders "
                   "(default reference; reference-fields writes it field by field)")
    p.add_argument("--rate", type=float, default=5000, help="latency: messages a second (default 5000)")
    p.add_argument("--seconds", type=float, default=10, help="latency: how long to publish (default 10)")
    p.add_argument("--prefetch", type=int, default=PEER_PREFETCH, help=f"end to end: logship's prefetch "
                   f"(default {PEER_PREFETCH}, the peers'; the RSS target is at {PEER_PREFETCH})")
    p.add_argument("--sync", choices=["batch", "never"], default="batch",
                   help="end to end: logship's output sync (default batch, as the targets are set; never shows "
                   "what fdatasync per batch costs, without verdicts)")
    p.add_argument("--only", action="append", choices=["replay", "e2e", "latency", "reload"],
                   help="run only these sections (repeatable)")
    args = p.parse_args()
    args.sections = set(args.only or ["replay", "e2e", "latency", "reload"])
    work = Path(args.work)
    (work / "out").mkdir(parents=True, exist_ok=True)
    corpus = measure.corpus(work, args.messages)
    subprocess.run(["jq", "-c", "-f", str(PEERS / "reference.jq"), str(corpus)],
                   stdout=open(work / "reference.jsonl", "wb"), check=True)
    reference = measure.records(work / "reference.jsonl")
    expected = sum(reference.values())
    print(f"corpus: {args.messages} messages, {expected} reference records; {machine(args)}", flush=True)
    table = ["| section | contender | median msg/s (wall) | rounds | median msg per CPU-s | rounds |",
             "| --- | --- | --- | --- | --- | --- |"]
    try:
        if "replay" in args.sections:
            table += report("replay", replay_rounds(args, work, corpus, reference), "logship replay")
        if "e2e" in args.sections:
            rss: list[float] = []
            # the targets compare like with like: logship at the peers' prefetch, syncing each batch
            judged = args.prefetch == PEER_PREFETCH and args.sync == "batch"
            table += report("end to end", e2e_rounds(args, work, corpus, reference, expected, rss), "logship run",
                            judged=judged)
            verdict = "met" if max(rss) < 80 else "MISSED"
            target = f" (target < 80 MiB: {verdict})" if args.prefetch == PEER_PREFETCH else ""
            table.append(f"| end to end | logship peak RSS (prefetch {args.prefetch}) | {max(rss):.1f} MiB | "
                         f"{' '.join(f'{r:.1f}' for r in rss)}{target} | | |")
        if "latency" in args.sections:
            total, inside, published = latency(args, work, corpus)
            p99 = statistics.quantiles(total, n=100)[98]
            table.append(f"| latency | publish to file at {args.rate:,.0f} msg/s | {percentiles(total)} | "
                         f"{published} (target p99 < 100 ms: {'met' if p99 < 0.1 else 'MISSED'}) | | |")
            table.append(f"| latency | of which logship: receipt to file | {percentiles(inside)} | | | |")
        if "reload" in args.sections:
            table.append(f"| reload | from a format's save to its first record | {reload_latency()} | | | |")
    except BenchError as error:
        print(f"bench: {error}; no figures reported", file=sys.stderr)
        return 1
    print("\n".join(table))
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
