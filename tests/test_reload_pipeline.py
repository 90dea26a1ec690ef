"""Reload without a broker: swaps, per-format isolation, invalid configs, routing."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from helpers import write_config
from logship.settings import load
from logship.service.daemon import Daemon
from logship.errors import OutputError
from logship.pipeline import Delivery
from logship.render.record import Source

URL = "amqp://guest:guest@127.0.0.1:1/%2F"  # never connected to: reload needs no broker
SAMPLES = Path(__file__).parent / "samples"

ROUTES = """
[[outputs]]
name = "main"
type = "file"
path = "log/main.log"

[[outputs]]
name = "other"
type = "file"
path = "log/other.log"

[[routes]]
format = "line"
output = "main"

[[routes]]
format = "second"
output = "other"
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    """A daemon (not running) over two formats and two outputs."""
    (tmp_path / "formats").mkdir()
    (tmp_path / "formats" / "line.j2").write_text("v1 {{ message.recipient }}")
    (tmp_path / "formats" / "second.j2").write_text("second {{ record.queue }}")
    config = write_config(tmp_path, URL, ROUTES, queues=("results",))
    d = Daemon(load(config))
    yield d
    d.pipeline.close()


def deliver(daemon: Daemon, sample: str = "dns-failure.json", queue: str = "results", **changes: Any) -> bool:
    """Hand one sample message to the daemon's pipeline and flush."""
    message = {**json.loads((SAMPLES / sample).read_text()), **changes}
    ok = daemon.pipeline.handle(Delivery(json.dumps(message).encode(), Source(queue)))
    daemon.pipeline.flush()
    return ok


def lines(folder: Path, name: str) -> list[str]:
    path = folder / "log" / name
    return path.read_text().splitlines() if path.exists() else []


def test_a_changed_format_renders_the_next_delivery_and_unchanged_outputs_keep_their_sinks(daemon, tmp_path):
    sinks = dict(daemon.pipeline.sinks)
    deliver(daemon)
    (tmp_path / "formats" / "line.j2").write_text("v2 {{ message.recipient }}")
    assert daemon.reload() is True
    deliver(daemon)
    assert lines(tmp_path, "main.log") == ["v1 someone@no-such-domain.invalid", "v2 someone@no-such-domain.invalid"]
    assert daemon.pipeline.sinks == sinks and all(daemon.pipeline.sinks[n] is s for n, s in sinks.items())
    assert daemon.last_reload_error is None


def test_a_broken_format_keeps_its_running_version_and_the_error_names_file_and_line(daemon, tmp_path, caplog):
    running = daemon.formats["line"]
    (tmp_path / "formats" / "line.j2").write_text("v2\n{{ message.recipient }\n")
    (tmp_path / "formats" / "second.j2").write_text("second-v2 {{ record.queue }}")
    with caplog.at_level(logging.INFO, logger="logship"):
        assert daemon.reload() is False
    deliver(daemon)
    assert lines(tmp_path, "main.log") == ["v1 someone@no-such-domain.invalid"]
    assert lines(tmp_path, "other.log") == ["second-v2 results"], "the other format reloads normally"
    assert daemon.formats["line"] is running
    error = next(r for r in caplog.records if r.getMessage().startswith("format failed to compile"))
    assert error.file.endswith("line.j2") and error.line == 2 and error.live == running.digest
    assert "line.j2:2" in daemon.last_reload_error


def test_a_deleted_format_stops_with_one_warning_while_the_other_routes_write(daemon, tmp_path, caplog):
    (tmp_path / "formats" / "line.j2").unlink()
    assert daemon.reload() is True
    assert "line" in daemon.formats, "kept until a second look: it may be a delete-and-recreate save"
    assert daemon._reload_at is not None, "the second look is scheduled"
    assert daemon.reload() is True
    with caplog.at_level(logging.WARNING, logger="logship"):
        for _ in range(3):
            assert deliver(daemon) is True, "not quarantined"
    warnings = [r for r in caplog.records if r.getMessage().startswith("format not loaded")]
    assert len(warnings) == 1 and warnings[0].format == "line"
    assert lines(tmp_path, "main.log") == []
    assert lines(tmp_path, "other.log") == ["second results"] * 3
    (tmp_path / "formats" / "line.j2").write_text("back {{ record.queue }}")
    assert daemon.reload() is True
    deliver(daemon)
    assert lines(tmp_path, "main.log") == ["back results"]


def test_a_new_format_with_a_new_route_and_output_starts(daemon, tmp_path):
    (tmp_path / "formats" / "third.j2").write_text("third {{ record.outcome }}")
    config = Path(daemon.config.file)
    config.write_text(config.read_text() + '\n[[outputs]]\nname = "new"\ntype = "file"\npath = "log/new.log"\n'
                      '\n[[routes]]\nformat = "third"\noutput = "new"\n')
    assert daemon.reload() is True
    deliver(daemon)
    assert lines(tmp_path, "new.log") == ["third bounced"]


def test_an_invalid_config_keeps_the_running_one_and_names_file_and_key(daemon, tmp_path, caplog):
    config = Path(daemon.config.file)
    good = config.read_text()
    config.write_text(good.replace('path = "log/main.log"', 'path = "log/moved.log"\ncolour = "blue"'))
    with caplog.at_level(logging.ERROR, logger="logship"):
        assert daemon.reload() is False
    deliver(daemon)
    assert lines(tmp_path, "main.log") and not lines(tmp_path, "moved.log")
    error = next(r for r in caplog.records if r.getMessage() == "config invalid; keeping the running config")
    assert error.file == str(config) and error.key == "outputs[0].colour"


def test_a_bad_when_at_reload_keeps_the_old_routes_and_says_which(daemon, tmp_path):
    config = Path(daemon.config.file)
    config.write_text(config.read_text().replace('format = "line"\n', 'format = "line"\nwhen = "record.outcome =="\n'))
    assert daemon.reload() is False
    assert "routes[0].when" in daemon.last_reload_error
    deliver(daemon)
    assert lines(tmp_path, "main.log") == ["v1 someone@no-such-domain.invalid"]


def test_a_changed_output_is_flushed_and_closed_at_the_swap_and_the_new_one_takes_over(daemon, tmp_path):
    old = daemon.pipeline.sinks["main"]
    daemon.pipeline.handle(Delivery((SAMPLES / "dns-failure.json").read_bytes(), Source("results")))  # not flushed
    config = Path(daemon.config.file)
    config.write_text(config.read_text().replace('"log/main.log"', '"log/main2.log"'))
    assert daemon.reload() is True
    assert lines(tmp_path, "main.log") == ["v1 someone@no-such-domain.invalid"], "flushed at the swap"
    assert daemon.pipeline.sinks["main"] is not old and daemon.pipeline.sinks["other"] is not None
    deliver(daemon)
    assert lines(tmp_path, "main2.log") == ["v1 someone@no-such-domain.invalid"]


class FailingSink:
    """An output whose disk is full."""

    name = "failing"

    def write(self, record: dict[str, Any], line: str, route: object = None) -> None: ...
    def flush(self) -> None: raise OutputError("disk full")
    def reopen(self) -> None: ...
    def close(self) -> None: ...


def test_a_retired_output_that_cannot_flush_postpones_the_reload_and_changes_nothing(daemon, tmp_path):
    failing = FailingSink()
    daemon.pipeline.sinks["main"] = failing
    (tmp_path / "formats" / "line.j2").write_text("v2 {{ message.recipient }}")
    config = Path(daemon.config.file)
    config.write_text(config.read_text().replace('"log/main.log"', '"log/main2.log"'))
    assert daemon.reload() is False
    assert daemon.pipeline.sinks["main"] is failing and daemon.formats["line"].render({}).startswith("v1")
    assert daemon._reload_at is not None, "retried later"


def test_broker_changes_ask_for_a_reconnect_and_batch_settings_do_not(daemon):
    config = Path(daemon.config.file)
    config.write_text(config.read_text().replace("prefetch = 1000", "prefetch = 1000\nbatch_size = 7"))
    assert daemon.reload() is True
    assert daemon.consumer.broker.batch_size == 7 and not daemon.consumer._reconnect
    config.write_text(config.read_text().replace("prefetch = 1000", "prefetch = 10"))
    assert daemon.reload() is True
    assert daemon.consumer.broker.prefetch == 10 and daemon.consumer._reconnect


ROUTING = """
[[outputs]]
name = "bounces"
type = "file"
path = "log/bounces.log"

[[outputs]]
name = "acme"
type = "file"
path = "log/acme.log"

[[routes]]
format = "line"
output = "bounces"
when = "record.outcome in ('bounced', 'expired')"

[[routes]]
format = "second"
output = "acme"
when = "message.customer == 'acme'"

[[routes]]
format = "line"
output = "acme"
queues = ["retry"]
"""


def test_routes_filter_on_record_and_message_select_queues_and_fan_out_in_several_formats(tmp_path):
    (tmp_path / "formats").mkdir()
    (tmp_path / "formats" / "line.j2").write_text("line {{ record.outcome }} {{ record.queue }}")
    (tmp_path / "formats" / "second.j2").write_text("second {{ message.customer }}")
    d = Daemon(load(write_config(tmp_path, URL, ROUTING)))
    try:
        deliver(d, customer="acme")                          # bounced, acme: both outputs
        deliver(d, "accepted-tls.json", customer="other")    # delivered, not acme: none
        deliver(d, "retry-queue-first-attempt.json", queue="retry")
    finally:
        d.pipeline.close()
    assert lines(tmp_path, "bounces.log") == ["line bounced results"]
    assert lines(tmp_path, "acme.log") == ["second acme", "line failed retry"]


def test_an_empty_format_file_is_a_save_in_progress_and_keeps_the_running_version(daemon, tmp_path):
    (tmp_path / "formats" / "line.j2").write_text("")
    assert daemon.reload() is False
    deliver(daemon)
    assert lines(tmp_path, "main.log") == ["v1 someone@no-such-domain.invalid"]
    assert "empty" in daemon.last_reload_error
