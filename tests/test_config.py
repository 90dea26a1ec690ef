"""Config: the README example works as written; every mistake names the file and key."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from logship.config.load import warnings
from logship.settings import load
from logship.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "tests" / "traffic" / "example.toml").read_text()


def write(workdir: Path, text: str) -> Path:
    """A config file in the work folder (which holds a formats/ copy)."""
    path = workdir / "logship.toml"
    path.write_text(text)
    return path


def test_the_readme_example_loads_with_paths_relative_to_the_config(workdir):
    config = load(write(workdir, EXAMPLE))
    assert config.broker.prefetch == 1000
    assert [(q.name, q.scope) for q in config.queues] == [("results", "latest"), ("retry", "latest")]
    assert config.formats.dir == str(workdir / "formats")
    assert config.output("deliveries").path == str(workdir / "log" / "deliveries.log")
    assert config.routes[1].when == "record.outcome == 'bounced'"


def test_the_example_is_the_one_in_the_readme():
    example = EXAMPLE.split("# --- example config ---\n")[1].split("# --- end ---")[0]
    assert example in (ROOT / "README.md").read_text()


def test_a_results_queue_alone_takes_every_attempt(workdir):
    config = load(write(workdir, EXAMPLE.replace('[[queues]]\nname = "retry"', "")))
    assert [(q.name, q.scope) for q in config.queues] == [("results", "all")]


def test_a_scope_can_be_set(workdir):
    text = EXAMPLE.replace('name = "results"        # final results: every attempt is new',
                           'name = "results"\nscope = "message"')
    assert load(write(workdir, text)).queues[0].scope == "message"


@pytest.mark.parametrize("broker, batch_size", [
    ("prefetch = 1000", 250),                    # unset: a quarter of the window
    ("prefetch = 100", 25),                      # follows a smaller window, so batches still fill
    ("prefetch = 3", 1),
    ("prefetch = 1000\nbatch_size = 500", 500),  # set: kept as it is
])
def test_batch_size_is_a_quarter_of_prefetch_unless_set(workdir, broker, batch_size):
    config = load(write(workdir, EXAMPLE.replace("prefetch = 1000", broker, 1)))
    assert config.broker.batch_size == batch_size
    assert not any("batch_size" in warning for warning in warnings(config))


def test_a_batch_larger_than_the_prefetch_window_is_warned_about(workdir):
    config = load(write(workdir, EXAMPLE.replace("prefetch = 1000", "prefetch = 100\nbatch_size = 500", 1)))
    assert [w for w in warnings(config) if "batch_size" in w] == [
        "broker.batch_size (500) is larger than broker.prefetch (100): a batch never fills, "
        "so every ack waits for broker.batch_interval"]


@pytest.mark.parametrize("change, key, problem", [
    (("prefetch = 1000", "prefetch = 1000\nprefech = 5"), "broker.prefech", "unknown key"),
    (("prefetch = 1000", 'prefetch = "many"'), "broker.prefetch", "expected an integer"),
    (("prefetch = 1000", "prefetch = 0"), "broker.prefetch", "at least 1"),
    (("prefetch = 1000", "prefetch = 1000\nbatch_size = 0"), "broker.batch_size", "at least 1"),
    (('type = "file"\npath = "log/bounces.jsonl"', 'type = "fiel"\npath = "log/bounces.jsonl"'),
     "outputs[1].type", "must be one of 'file'"),
    (('output = "bounces"', 'output = "bounce"'), "routes[1].output", "no output called 'bounce'"),
    (('format = "json"', 'format = "jsn"'), "routes[1].format", "no format 'jsn'"),
    (('when = "record.outcome == \'bounced\'"', 'when = "record.outcome =="'), "routes[1].when", "invalid expression"),
    (('name = "retry"', 'name = "retry"\nscope = "newest"'), "queues[1].scope", "must be one of"),
    (('name = "deliveries"', 'name = "bounces"'), "outputs[1].name", "used twice"),
    (('path = "log/deliveries.log"', 'path = 5'), "outputs[0].path", "expected a string"),
])
def test_mistakes_name_the_file_and_the_key_path(workdir, change, key, problem):
    path = write(workdir, EXAMPLE.replace(*change, 1))
    with pytest.raises(ConfigError) as caught:
        from logship.cli.commands import checked_config
        checked_config(str(path))
    assert caught.value.key == key and problem in caught.value.problem
    assert str(path) in str(caught.value)


def test_invalid_toml_names_the_file_and_line(workdir):
    with pytest.raises(ConfigError, match=r"logship.toml: not valid TOML: .*line 2"):
        load(write(workdir, "[broker]\nurl = \n"))


def test_check_exits_78_on_a_typo_and_0_when_all_is_well(workdir):
    good = write(workdir, EXAMPLE)
    ok = subprocess.run([sys.executable, "-m", "logship.cli", "check", "--config", str(good)],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert "format mailerq: ok" in ok.stdout and "guest:guest" not in ok.stdout
    bad = write(workdir, EXAMPLE.replace("[[routes]]", "[[route]]", 1))
    typo = subprocess.run([sys.executable, "-m", "logship.cli", "check", "--config", str(bad)],
                          capture_output=True, text=True, cwd=ROOT)
    assert typo.returncode == 78
    assert f"{bad}: route: unknown key" in typo.stderr


def test_check_reports_a_broken_format_with_file_and_line(workdir):
    (workdir / "formats" / "json.j2").write_text("{{ record.outcome\n")
    out = subprocess.run([sys.executable, "-m", "logship.cli", "check", "--config", str(write(workdir, EXAMPLE))],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 78
    assert f"{workdir / 'formats' / 'json.j2'}:1:" in out.stderr or f"{workdir / 'formats' / 'json.j2'}:2:" in out.stderr


def test_credentials_come_from_a_file_or_the_environment_and_are_never_shown(workdir):
    (workdir / "broker.pass").write_text("file-secret\n")
    text = EXAMPLE.replace('prefetch = 1000', 'prefetch = 1000\npassword_file = "broker.pass"')
    text = text.replace("amqp://guest:guest@localhost", "amqp://logship@localhost")
    config = load(write(workdir, text), environ={})
    assert config.broker.url == "amqp://logship:file-secret@localhost:5672/%2F"
    assert "file-secret" not in config.broker.display_url and "file-secret" not in repr(config)
    env = load(write(workdir, text), environ={"LOGSHIP_BROKER_PASSWORD": "env-secret"})
    assert env.broker.url == "amqp://logship:env-secret@localhost:5672/%2F"
    url = load(write(workdir, text), environ={"LOGSHIP_BROKER_URL": "amqps://u:p@mq.example:5671/v",
                                             "LOGSHIP_BROKER_PASSWORD": "x"})
    assert url.broker.url == "amqps://u:x@mq.example:5671/v" and url.broker.display_url == "amqps://u:***@mq.example:5671/v"


def test_a_missing_password_file_is_named(workdir):
    text = EXAMPLE.replace('prefetch = 1000', 'prefetch = 1000\npassword_file = "nope.pass"')
    with pytest.raises(ConfigError) as caught:
        load(write(workdir, text), environ={})
    assert caught.value.key == "broker.password_file"
