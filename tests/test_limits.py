"""Limits without a broker: hostile formats refused quickly, per-route quarantine and its replay, secrets, bodies."""
from __future__ import annotations

import gzip
import json
import os
import stat
import time
import zlib
from pathlib import Path

import pytest

from helpers import logship, write_config
from logship.render.budget import BUDGET, Budget, RenderTimeout
from logship.settings import load
from logship.errors import MessageError
from logship.render.formats import CONTROL, compile_format, one_line
from logship.pipeline import Delivery, Pipeline
from logship.render.filters import SECRET_PATHS
from logship.render.record import Source, decode, records

SAMPLES = Path(__file__).parent / "samples"
SECRETS = ["s3cr3t-relay-password", "BEGIN PRIVATE KEY", "MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA",
           "Body text"]

#: formats a hostile user would write, and the words of the reason each render fails with
HOSTILE = {
    "loop": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
             "formats.render_timeout"),
    "loop_output": ("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
                    "formats.max_line_length"),
    "huge": ("{{ 'a' * 1000000000 }}", "formats.max_line_length"),
    "power": ("{{ 7 ** (10**8) }}", "bits"),
    "printf": ("{{ '%01000000000d'|format(1) }}", "formats.max_line_length"),
    "str_format": ("{{ '{:>1000000000}'.format(message.recipient) }}", "formats.max_line_length"),
    "center": ("{{ message.recipient|center(10**9) }}", "formats.max_line_length"),
    "repeat": ("{{ message.recipient * 10**7 }}", "formats.max_line_length"),
    "grow": ("{% set ns = namespace(s=message.recipient) %}{% for i in range(64) %}"
             "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}", "formats.max_line_length"),
    "join": ("{{ range(100000)|join(message.recipient * 50) }}", "formats.max_line_length"),
    "recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "RecursionError"),
    "escape": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "SecurityError"),
}

ROUTES = """
[formats]
render_timeout = 0.3
# a loop writing one character a turn must reach the line limit well inside the time
# budget even on a busy 2-core machine: 64 KiB is 65,536 turns, 1 MiB sixteen times as many
max_line_length = 65536

[[outputs]]
name = "all"
type = "file"
path = "log/all.log"

[[outputs]]
name = "extra"
type = "file"
path = "log/extra.log"

[[routes]]
format = "line"
output = "all"

[[routes]]
format = "extra"
output = "extra"
"""


def pipeline(workdir: Path, extra_format: str, config_extra: str = "") -> Pipeline:
    """A pipeline with two file outputs: `line` (always fine) and `extra` (the format under test)."""
    (workdir / "formats" / "line.j2").write_text("{{ message.recipient }} {{ record.attempt_number }}\n")
    (workdir / "formats" / "extra.j2").write_text(extra_format)
    return Pipeline.build(load(write_config(workdir, "amqp://localhost", ROUTES + config_extra)))


def sample(name: str = "secrets-and-mime.json", **changes: object) -> Delivery:
    """A sample from the results queue, every attempt new."""
    message = json.loads((SAMPLES / name).read_text())
    message.update(changes)
    return Delivery(json.dumps(message).encode(), Source("results", "all", True))


def kept(workdir: Path) -> list[dict]:
    """The quarantine's entries."""
    path = workdir / "quarantine" / "quarantine.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("name", HOSTILE)
def test_check_compiles_each_hostile_format_in_seconds_without_running_it(workdir, name):
    pipeline(workdir, HOSTILE[name][0]).close()
    started = time.monotonic()
    out = logship("check", "--config", str(workdir / "logship.toml"))
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_format_fails_its_route_with_the_limit_named_and_the_other_route_writes(workdir, name):
    source, reason = HOSTILE[name]
    pipe = pipeline(workdir, source)  # sets BUDGET.seconds to formats.render_timeout (0.3)
    assert BUDGET.arm()  # on pytest's main thread, as on the daemon's
    try:
        started = time.monotonic()
        assert pipe.handle(sample()), "acked: the good route holds it"
        elapsed = time.monotonic() - started
    finally:
        BUDGET.disarm()
    pipe.flush()
    pipe.close()
    assert elapsed < 3
    (entry,) = kept(workdir)
    assert reason in entry["reason"] and entry["routes"][0]["output"] == "extra"
    assert (workdir / "log" / "all.log").read_text() == "user@example.org 1\n"
    assert not (workdir / "log" / "extra.log").exists() or (workdir / "log" / "extra.log").read_text() == ""


def test_replaying_a_route_quarantine_after_the_fix_writes_only_the_failed_route(workdir):
    pipe = pipeline(workdir, "{{ 1 // (record.attempt_number - record.attempt_number) }}\n")
    assert pipe.handle(sample("expired.json"))
    pipe.flush()
    pipe.close()
    attempts = len(json.loads((SAMPLES / "expired.json").read_text())["results"])
    assert len((workdir / "log" / "all.log").read_text().splitlines()) == attempts
    (entry,) = kept(workdir)
    assert [r["attempt"] for r in entry["routes"]] == list(range(1, attempts + 1))
    (workdir / "formats" / "extra.j2").write_text("fixed {{ record.attempt_number }}\n")
    os.rename(workdir / "quarantine" / "quarantine.jsonl", workdir / "replay.jsonl")
    out = logship("replay", "--config", str(workdir / "logship.toml"), str(workdir / "replay.jsonl"))
    assert out.returncode == 0, out.stderr
    assert len((workdir / "log" / "all.log").read_text().splitlines()) == attempts, "written once, not twice"
    assert (workdir / "log" / "extra.log").read_text().splitlines() == [f"fixed {n}" for n in range(1, attempts + 1)]
    assert kept(workdir) == []


def test_a_route_that_fails_again_on_replay_stays_a_route_quarantine(workdir):
    pipe = pipeline(workdir, "{{ 1 // (record.attempt_number - record.attempt_number) }}\n")
    assert pipe.handle(sample())
    pipe.flush()
    (entry,) = kept(workdir)
    os.rename(workdir / "quarantine" / "quarantine.jsonl", workdir / "replay.jsonl")
    out = logship("replay", "--config", str(workdir / "logship.toml"), str(workdir / "replay.jsonl"))
    assert out.returncode == 0, out.stderr
    (again,) = kept(workdir)
    assert again["routes"] == entry["routes"], "a later replay must still redo just that route"
    assert (workdir / "log" / "all.log").read_text() == "user@example.org 1\n"


def test_no_secret_reaches_a_line_the_quarantine_or_a_reason_unless_a_format_opts_in(workdir):
    pipe = pipeline(workdir, "{{ message | tojson }} {{ ('%(' ~ message.smarthost.password ~ ')s') % {} }}\n")
    assert pipe.handle(sample())
    pipe.flush()
    pipe.close()
    quarantine = (workdir / "quarantine" / "quarantine.jsonl").read_text()
    assert "[redacted]" in quarantine
    for secret in SECRETS:
        assert secret not in quarantine and secret not in (workdir / "log" / "all.log").read_text()
    assert stat.S_IMODE((workdir / "quarantine" / "quarantine.jsonl").stat().st_mode) == 0o600
    assert stat.S_IMODE((workdir / "quarantine").stat().st_mode) == 0o700


@pytest.mark.parametrize("key", sorted({path[0] for path in SECRET_PATHS}))
def test_a_message_with_any_one_kind_of_secret_alone_is_redacted(key):
    message = {"recipient": "a@b.example", "results": [{"state": "smtp"}],
               "dkim": [{"key": "PRIVATE-KEY"}], "smarthost": {"password": "PASSWORD"},
               "mime": "MIME-BODY", "data": "DATA-BODY"}
    alone = {k: v for k, v in message.items() if k in ("recipient", "results", key)}
    (record,) = records(alone, Source("results"), 0.0)
    line = json.dumps(record["message"])
    assert "[redacted]" in line and not any(s in line for s in ("PRIVATE-KEY", "PASSWORD", "MIME-BODY", "DATA-BODY"))


def test_a_format_named_in_expose_secrets_sees_them_and_its_errors_still_hide_them(workdir):
    extra = 'expose_secrets = ["extra"]\n'
    config = ROUTES.replace("render_timeout = 0.3\n", "render_timeout = 0.3\n" + extra)
    (workdir / "formats" / "line.j2").write_text("{{ message.smarthost.password }}\n")
    (workdir / "formats" / "extra.j2").write_text("{{ message.smarthost.password }}\n")
    pipe = Pipeline.build(load(write_config(workdir, "amqp://localhost", config)))
    assert pipe.handle(sample())
    (workdir / "formats" / "extra.j2").write_text("{{ ('%(' ~ message.smarthost.password ~ ')s') % {} }}\n")
    from logship.render.formats import FormatSet
    pipe.formats = FormatSet.load(workdir / "formats")
    assert pipe.handle(sample())
    pipe.flush()
    pipe.close()
    assert (workdir / "log" / "all.log").read_text() == "[redacted]\n[redacted]\n"
    assert (workdir / "log" / "extra.log").read_text() == "s3cr3t-relay-password\n"
    (entry,) = kept(workdir)
    assert "KeyError: '[redacted]'" in entry["reason"]
    assert "s3cr3t-relay-password" not in entry["reason"] + json.dumps(entry["routes"])
    assert "s3cr3t-relay-password" in entry["body"], "an opted-in format needs them in a replay"


class ExhaustedSink:
    """A file sink stand-in whose check runs out of memory, as a huge record would."""

    name = "extra"

    def check(self, record: dict) -> None:
        raise MemoryError

    def write(self, record: dict, line: str, route: object = None) -> None:
        raise AssertionError("nothing may be written")

    def flush(self) -> None:
        pass

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_memory_error_quarantines_the_delivery_and_the_pipeline_goes_on(workdir):
    pipe = pipeline(workdir, "x\n")
    real = pipe.sinks["extra"]
    pipe.swap(pipe.config, pipe.formats, __import__("logship.pipeline").pipeline.routers(pipe.config),
              {**pipe.sinks, "extra": ExhaustedSink()}, pipe.quarantine)
    assert pipe.handle(sample()) is False
    pipe.flush()
    (entry,) = kept(workdir)
    assert entry["reason"].startswith("MemoryError") and "routes" not in entry
    real.close()
    pipe.close()


def test_a_gzip_bomb_stops_at_the_size_limit_with_the_limit_named():
    stream = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * (1 << 20)
    bomb = b"".join(stream.compress(chunk) for _ in range(200)) + stream.flush()  # 200 MiB inflated
    started = time.monotonic()
    with pytest.raises(MessageError, match=r"inflates past messages.max_size \(67,108,864 bytes\)"):
        decode(bomb, "gzip")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("encoding, body, reason", [
    ("gzip", gzip.compress(b'{"results": [{}]}')[:-6], "cut short"),
    ("gzip", b"plain text", "does not decompress"),
    ("br", b"{}", "content-encoding 'br' is not supported"),
    ("zstd", b"{}", "not supported"),
])
def test_odd_encodings_are_refused_with_a_precise_reason(encoding, body, reason):
    with pytest.raises(MessageError, match=reason):
        decode(body, encoding)


@pytest.mark.parametrize("encoding, pack", [
    ("gzip", gzip.compress),
    ("GZIP", lambda b: gzip.compress(b[:10]) + gzip.compress(b[10:])),  # two members in a row
    ("deflate", zlib.compress),
    ("deflate", lambda b: zlib.compressobj(6, zlib.DEFLATED, -15).compress(b) + b""),
    ("identity", lambda b: b),
])
def test_gzip_deflate_and_identity_bodies_decode(encoding, pack):
    body = json.dumps({"recipient": "a@b.example", "results": [{"state": "smtp"}]}).encode()
    packed = pack(body)
    if encoding == "deflate" and packed[:1] != b"\x78":
        stream = zlib.compressobj(6, zlib.DEFLATED, -15)
        packed = stream.compress(body) + stream.flush()
    assert decode(packed, encoding)["recipient"] == "a@b.example"


def test_a_body_over_the_size_limit_is_refused_before_parsing():
    with pytest.raises(MessageError, match="over messages.max_size"):
        decode(b"{" + b" " * 2000 + b"}", None, max_size=1000)


@pytest.mark.parametrize("char", ["\u202e", "\u202a", "\u2066", "\u2069", "\u200b", "\u200f"])
def test_bidirectional_and_invisible_marks_are_escaped_in_lines(char):
    assert one_line(f"a{char}b") == f"a\\u{ord(char):04x}b" and CONTROL.search(char)


def test_the_time_budget_interrupts_a_python_loop_and_only_a_render():
    budget = Budget(0.2)
    assert budget.arm()
    try:
        budget.begin()
        with pytest.raises(RenderTimeout):
            while True:
                pass
        budget.end()
        time.sleep(0.6)  # no render running: the alarms in between change nothing
    finally:
        budget.disarm()


def test_slow_renders_within_their_budget_report_progress_and_idle_time_does_not():
    budget, pings = Budget(2.0), []
    budget.on_progress = lambda: pings.append(time.monotonic())
    assert budget.arm()
    try:
        time.sleep(0.6)  # no render running: no progress to report
        assert pings == []
        budget.begin()
        deadline = time.monotonic() + 0.8
        while time.monotonic() < deadline:  # a render that takes long but stays within 2 s
            pass
        budget.end()
    finally:
        budget.disarm()
    assert len(pings) >= 2


def test_a_message_with_too_many_attempts_is_refused_before_any_render():
    body = json.dumps({"recipient": "a@b.example", "results": [{"state": "smtp"}] * 11}).encode()
    with pytest.raises(MessageError, match=r"11 attempts, over messages.max_attempts \(10\)"):
        decode(body, None, max_attempts=10)
    assert len(decode(body, None, max_attempts=11)["results"]) == 11


def test_compiling_never_runs_an_expression(tmp_path):
    path = tmp_path / "f.j2"
    path.write_text("{{ 'a' * 1000000000 }}{% autoescape 'x'|center(10**9) %}{% endautoescape %}")
    started = time.monotonic()
    compile_format(path)
    assert time.monotonic() - started < 1
