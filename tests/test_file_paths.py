"""Per-record paths: record fields and the received date pick the file; hostile values never escape."""
from __future__ import annotations

import calendar
import json
import os
from pathlib import Path

import pytest

from logship.settings import load
from logship.errors import ConfigError
from logship.pipeline import Delivery, Pipeline
from logship.render.record import Source
from logship.sinks.file.sink import FileSink

from helpers import write_config

RECEIVED = calendar.timegm((2026, 11, 29, 23, 59, 59))

OUTPUTS = """
[[outputs]]
name = "per-domain"
type = "file"
path = "log/{{ record.recipient_domain }}/%Y-%m-%d.log"

[[outputs]]
name = "per-customer"
type = "file"
path = "log/customers/{{ message.customer }}.log"
max_open_files = 2

[[routes]]
format = "line"
output = "per-domain"

[[routes]]
format = "line"
output = "per-customer"
"""


def pipeline(workdir: Path) -> Pipeline:
    """A pipeline writing under workdir/log, with a clock fixed just before midnight UTC."""
    (workdir / "formats").mkdir(exist_ok=True)
    (workdir / "formats" / "line.j2").write_text("{{ message.recipient }} {{ attempt.time }}\n")
    config = load(write_config(workdir, "amqp://guest:guest@localhost/", OUTPUTS))
    built = Pipeline.build(config)
    return Pipeline(config, built.formats, built.sinks, built.quarantine, clock=lambda: RECEIVED)


def message(recipient: str, customer: str = "acme", attempts: int = 1) -> Delivery:
    """A final result with `attempts` attempts, as a delivery from the results queue."""
    results = [{"state": "smtp", "result": "error", "time": f"2026-11-29 23:0{i}:00", "code": 451}
               for i in range(attempts)]
    body = {"envelope": "b@sender.example", "recipient": recipient, "customer": customer, "results": results}
    return Delivery(json.dumps(body).encode(), Source("results"))


def files_under(folder: Path) -> dict[str, str]:
    """Every file below `folder`, relative name to content."""
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}


def test_record_fields_and_the_received_date_pick_the_file(tmp_path):
    pipe = pipeline(tmp_path)
    assert pipe.handle(message("a@Gmail.com", "acme"))
    assert pipe.handle(message("b@example.org", "beta", attempts=2))
    pipe.flush()
    pipe.close()
    assert files_under(tmp_path / "log") == {
        "gmail.com/2026-11-29.log": "a@Gmail.com 2026-11-29 23:00:00\n",
        "example.org/2026-11-29.log": "b@example.org 2026-11-29 23:00:00\nb@example.org 2026-11-29 23:01:00\n",
        "customers/acme.log": "a@Gmail.com 2026-11-29 23:00:00\n",
        "customers/beta.log": "b@example.org 2026-11-29 23:00:00\nb@example.org 2026-11-29 23:01:00\n",
    }


class CountingTemplate:
    """Wraps a path template and counts how often a path is worked out."""

    def __init__(self, template: object) -> None:
        self.template, self.renders = template, 0

    def render(self, record: dict) -> str:
        self.renders += 1
        return self.template.render(record)


def test_a_record_path_is_worked_out_once_for_the_check_and_the_write(tmp_path):
    pipe = pipeline(tmp_path)
    sink = pipe.sinks["per-domain"]
    sink.template = counting = CountingTemplate(sink.template)
    assert pipe.handle(message("b@example.org", "beta", attempts=2))
    pipe.flush()
    pipe.close()
    assert counting.renders == 2
    assert files_under(tmp_path / "log")["example.org/2026-11-29.log"].count("\n") == 2


@pytest.mark.parametrize("recipient, customer, problem", [
    ("x@../../etc", "acme", "a value holds '/'"),
    ("x@example.com", "../../../etc/passwd", "a value holds '/'"),
    ("x@example.com", "/abs", "a value holds '/'"),
    ("x@example.com", "a//b", "a value holds '/'"),
    ("evil@victim.org/2026-11-29.log", "acme", "a value holds '/'"),
    ("x@..", "acme", "segment '..'"),
    ("x@example.com", "a\0b", "control character U+0000"),
    ("x@example.com", "a\rb", "control character U+000D"),
    ("x@example.com", "a\nb", "control character U+000A"),
    ("x@example.com", "a\u202eb", "control character U+202E"),
    ("x@example.com", "", "an expression is empty"),
    ("nodomain", "acme", "an expression is empty"),
    ("x@example.com", "x" * 300, "longer than 200 bytes"),
])
def test_a_hostile_path_value_quarantines_its_route_and_the_other_route_writes(
        tmp_path, recipient, customer, problem):
    pipe = pipeline(tmp_path)
    assert pipe.handle(message(recipient, customer, attempts=2)) is True, "acked: the other route holds it"
    pipe.flush()
    pipe.close()
    (kept,) = [json.loads(line) for line in (tmp_path / "quarantine" / "quarantine.jsonl").read_text().splitlines()]
    assert problem in kept["reason"] and "refused" in kept["reason"]
    assert len({r["output"] for r in kept["routes"]}) == 1 and [r["attempt"] for r in kept["routes"]] == [1, 2]
    assert json.loads(kept["body"])["customer"] == customer
    written = files_under(tmp_path / "log")
    assert sum(text.count("\n") for text in written.values()) == 2, "the good route's two attempts"
    made = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}
    assert all(p.startswith(("log", "quarantine", "formats", "logship.toml")) for p in made), made


@pytest.mark.parametrize("in_the_way, problem", [
    ("file", "Not a directory"),       # a file where the domain's folder must be
    ("folder", "Is a directory"),      # a folder where the day's file must be
])
def test_a_path_that_collides_with_what_exists_fails_its_route_not_the_output(tmp_path, in_the_way, problem):
    pipe = pipeline(tmp_path)
    (tmp_path / "log").mkdir()
    if in_the_way == "file":
        (tmp_path / "log" / "victim.org").write_text("")
    else:
        (tmp_path / "log" / "victim.org" / "2026-11-29.log").mkdir(parents=True)
    assert pipe.handle(message("x@victim.org")) and pipe.handle(message("y@other.org"))
    pipe.flush()  # no OutputError: the acks of every queue go on
    pipe.close()
    (kept,) = [json.loads(line) for line in (tmp_path / "quarantine" / "quarantine.jsonl").read_text().splitlines()]
    assert problem in kept["reason"] and kept["routes"][0]["output"] == "per-domain"
    assert files_under(tmp_path / "log" / "customers")["acme.log"].count("\n") == 2
    assert files_under(tmp_path / "log" / "other.org") == {"2026-11-29.log": "y@other.org 2026-11-29 23:00:00\n"}


def test_more_paths_than_max_open_files_close_the_least_recently_used(tmp_path):
    sink = FileSink("c", str(tmp_path / "{{ record.customer }}.log"), max_open_files=3)
    for round_ in range(3):
        for customer in "abcdefg":
            sink.write({"record": {"customer": customer, "received_epoch": 0}}, f"{customer}{round_}")
            sink.flush()
            assert len(sink._files) <= 3
    sink.close()
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        f"{c}.log": f"{c}0\n{c}1\n{c}2\n" for c in "abcdefg"}
    assert len(os.listdir(f"/proc/{os.getpid()}/fd")) < 50


def test_files_and_folders_get_the_configured_mode_and_owner(tmp_path):
    os.umask(0o077)
    try:
        sink = FileSink("m", str(tmp_path / "base/{{ record.customer }}/x.log"), mode=0o644, dir_mode=0o755,
                        uid=65534, gid=65534)
        sink.write({"record": {"customer": "acme", "received_epoch": 0}}, "line")
        sink.flush()
        sink.close()
    finally:
        os.umask(0o022)
    folder, file = tmp_path / "base" / "acme", tmp_path / "base" / "acme" / "x.log"
    assert folder.stat().st_mode & 0o777 == 0o755 and (folder.stat().st_uid, folder.stat().st_gid) == (65534, 65534)
    assert file.stat().st_mode & 0o777 == 0o644 and (file.stat().st_uid, file.stat().st_gid) == (65534, 65534)


def test_the_default_mode_is_0640_for_files_and_0750_for_folders(tmp_path):
    sink = FileSink("m", str(tmp_path / "new" / "x.log"))
    sink.write({"record": {}}, "line")
    sink.flush()
    sink.close()
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "new" / "x.log").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("extra, key", [
    ('path = "log/{% if x %}a{% endif %}.log"', "outputs[0].path"),
    ('path = "log/{{ record. }}.log"', "outputs[0].path"),
    ('path = "x.log"\nowner = "no-such-user-here"', "outputs[0].owner"),
    ('path = "x.log"\ngroup = "no-such-group-here"', "outputs[0].group"),
    ('path = "x.log"\nmax_open_files = 0', "outputs[0].max_open_files"),
    ('path = "x.log"\nsync = -1', "outputs[0].sync"),
])
def test_a_bad_path_template_or_owner_is_a_config_error(tmp_path, extra, key):
    (tmp_path / "c.toml").write_text(f'[[queues]]\nname = "results"\n\n[[outputs]]\nname = "o"\ntype = "file"\n{extra}\n')
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "c.toml")
    assert caught.value.key == key
