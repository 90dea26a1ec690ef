"""glibc keeps what a batch frees: no fresh pages (page faults) for every flush."""
from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from helpers import logship, write_config

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "samples" / "accepted-tls.json"

# What a file output's flush allocates for a batch of 360 lines of 350 characters, 200 times.
PROBE = """
import resource, sys
from logship.service.memory import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory()
lines = ["z" * 350] * 360
("\\n".join(lines) + "\\n").encode()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    ("\\n".join(lines) + "\\n").encode()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def probe_faults(mode: str) -> int:
    """Page faults of 200 batch-sized flushes in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, check=True, capture_output=True, text=True)
    return int(out.stdout)


def test_freed_batch_buffers_are_reused_instead_of_faulted_in_afresh():
    plain, kept = probe_faults("plain"), probe_faults("kept")
    assert plain > 3000   # about 30 pages a flush with glibc's defaults
    assert kept < 200


def replay_faults(workdir: Path, messages: int) -> int:
    """Page faults of `logship replay` of `messages` copies of one sample."""
    corpus = workdir / f"corpus-{messages}.jsonl"
    corpus.write_bytes((SAMPLE.read_bytes().replace(b"\n", b"") + b"\n") * messages)
    config = write_config(workdir, "amqp://localhost", '[[outputs]]\nname = "o"\ntype = "file"\n'
                          f'path = "out-{messages}.log"\n[[routes]]\nformat = "json"\noutput = "o"\n',
                          queues=("results",))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    assert logship("replay", "--config", str(config), str(corpus)).returncode == 0
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before


def test_replay_does_not_fault_in_fresh_pages_for_every_flush(workdir):
    # a replay flushes every 10,000 messages: 30,000 more are three more flushes of a few MB
    more = replay_faults(workdir, 40_000) - replay_faults(workdir, 10_000)
    assert more < 3000  # without keep_freed_memory: 7,500
