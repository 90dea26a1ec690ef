"""Broker settings: a cluster's URLs, credentials from the environment, TLS files, queue declarations, node rounds."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import logship
from logship.broker import nodes as nodes_module
from logship.broker.nodes import FIRST_BACKOFF, Nodes
from logship.config.load import warnings
from logship.settings import load
from logship.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "tests" / "traffic" / "example.toml").read_text()
ONE_URL = 'url = "amqp://guest:guest@localhost:5672/%2F"'
THREE_URLS = ('url = ["amqp://logship:s3cret@mq1:5672/mail", "amqp://logship:s3cret@mq2:5672/mail", '
              '"amqp://logship:s3cret@mq3:5672/mail"]')


def write(workdir: Path, text: str, broker: str = "") -> Path:
    """The README example with `broker` keys added to its [broker] table."""
    path = workdir / "logship.toml"
    path.write_text(text.replace("prefetch = 1000", "prefetch = 1000\n" + broker, 1))
    return path


def test_a_list_of_urls_is_a_cluster_shown_masked_by_check(workdir):
    config = load(write(workdir, EXAMPLE.replace(ONE_URL, THREE_URLS)), environ={})
    assert [u.split("@")[1] for u in config.broker.urls] == ["mq1:5672/mail", "mq2:5672/mail", "mq3:5672/mail"]
    out = logship("check", "--config", str(workdir / "logship.toml"))
    assert out.returncode == 0, out.stderr
    assert "s3cret" not in out.stdout + out.stderr
    assert ("broker amqp://logship:***@mq1:5672/mail, amqp://logship:***@mq2:5672/mail, "
            "amqp://logship:***@mq3:5672/mail") in out.stdout


def test_the_password_from_the_environment_or_a_file_applies_to_every_node(workdir):
    (workdir / "pass").write_text("from-file\n")
    text = EXAMPLE.replace(ONE_URL, THREE_URLS.replace("logship:s3cret@", "logship@"))
    from_file = load(write(workdir, text, 'password_file = "pass"'), environ={})
    assert all(url.startswith("amqp://logship:from-file@") for url in from_file.broker.urls)
    from_env = load(write(workdir, text, 'password_file = "pass"'), environ={"LOGSHIP_BROKER_PASSWORD": "a b/c"})
    assert all(url.startswith("amqp://logship:a%20b%2Fc@") for url in from_env.broker.urls)


@pytest.mark.parametrize("value", ["amqp://a:5672/v amqps://b:5671/v", "amqp://a:5672/v,amqps://b:5671/v",
                                   " amqp://a:5672/v ,\n amqps://b:5671/v "])
def test_the_url_variable_may_list_nodes_separated_by_spaces_or_commas(workdir, value):
    config = load(write(workdir, EXAMPLE), environ={"LOGSHIP_BROKER_URL": value})
    assert config.broker.urls == ("amqp://a:5672/v", "amqps://b:5671/v")


@pytest.mark.parametrize("environ, key, words", [
    ({"LOGSHIP_BROKER_URL": "http://user:pw@mq:5672/"}, "LOGSHIP_BROKER_URL", "must start with amqp://"),
    ({"LOGSHIP_BROKER_URL": ""}, "LOGSHIP_BROKER_URL", "at least one"),
    ({"LOGSHIP_BROKER_URL": "amqp://mq:5672/v amqp://mq:port/v"}, "LOGSHIP_BROKER_URL[1]", "not a URL"),
    ({"LOGSHIP_BROKER_PASSWORD": ""}, "LOGSHIP_BROKER_PASSWORD", "empty"),
    ({"LOGSHIP_BROKER_PASSWORD": "two\nlines"}, "LOGSHIP_BROKER_PASSWORD", "line break"),
])
def test_bad_settings_from_the_environment_are_config_errors_naming_the_variable(workdir, environ, key, words):
    with pytest.raises(ConfigError) as caught:
        load(write(workdir, EXAMPLE), environ=environ)
    assert caught.value.key == key and words in caught.value.problem
    assert "pw" not in str(caught.value)


def test_a_bad_url_in_the_environment_exits_78_without_a_traceback(workdir, monkeypatch):
    monkeypatch.setenv("LOGSHIP_BROKER_URL", "http://mq.example/")
    out = logship("check", "--config", str(write(workdir, EXAMPLE)))
    assert out.returncode == 78
    assert "LOGSHIP_BROKER_URL: must start with amqp:// or amqps://" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_empty_environ_is_an_empty_environment(workdir, monkeypatch):
    monkeypatch.setenv("LOGSHIP_BROKER_URL", "amqp://from-the-real-environment:5672/")
    assert load(write(workdir, EXAMPLE), environ={}).broker.url == "amqp://guest:guest@localhost:5672/%2F"
    assert load(write(workdir, EXAMPLE)).broker.url == "amqp://from-the-real-environment:5672/"


@pytest.mark.parametrize("broker, key, words", [
    ('url = []', "broker.url", "at least one"),
    ('url = ["amqp://mq1/v", "http://mq2/v"]', "broker.url[1]", "must start with"),
    ('url = "amqps://mq/v?ssl_options=%7B%7D"', "broker.url", "use broker.tls_ca"),
    ('url = "amqps://mq/v"\ntls_ca = "missing.pem"', "broker.tls_ca", "cannot read"),
    ('url = "amqps://mq/v"\ntls_ca = "not-a-cert.pem"', "broker.tls_ca", "cannot load"),
    ('url = "amqps://mq/v"\ntls_key = "key.pem"', "broker.tls_key", "needs tls_cert"),
])
def test_bad_broker_settings_name_their_key(workdir, broker, key, words):
    (workdir / "not-a-cert.pem").write_text("hello\n")
    text = EXAMPLE.replace(ONE_URL + "\n", "")
    with pytest.raises(ConfigError) as caught:
        load(write(workdir, text, broker), environ={})
    assert caught.value.key == key and words in str(caught.value)


def test_a_queue_type_is_declared_as_configured_and_needs_declare(workdir):
    text = EXAMPLE.replace('name = "retry"', 'name = "retry"\ndeclare = true\ntype = "quorum"\nsingle_active = true')
    queues = load(write(workdir, text), environ={}).queues
    assert queues[1].arguments == {"x-queue-type": "quorum", "x-single-active-consumer": True}
    assert queues[0].type is None and not queues[0].declare
    bad = EXAMPLE.replace('name = "retry"', 'name = "retry"\ntype = "quorum"')
    with pytest.raises(ConfigError) as caught:
        load(write(workdir, bad), environ={})
    assert caught.value.key == "queues[1].type" and "needs declare = true" in caught.value.problem


def test_a_lost_node_hands_over_to_the_next_at_once_and_a_failed_round_backs_off():
    nodes = Nodes(("amqp://a/", "amqp://b/", "amqp://c/"), cap=2.0)
    assert [nodes.failed() for _ in range(9)] == [0, 0, FIRST_BACKOFF, 0, 0, 2 * FIRST_BACKOFF, 0, 0, 2.0]
    assert nodes.url == "amqp://a/" and nodes.failovers == 0
    assert not nodes.connected()            # the first connection is no failover
    assert nodes.failed() == 0 and nodes.url == "amqp://b/"
    assert nodes.connected() and nodes.failovers == 1


def test_a_connection_that_lasted_starts_a_new_round_with_the_first_backoff(monkeypatch):
    nodes = Nodes(("amqp://a/",), cap=30.0)
    assert [nodes.failed() for _ in range(3)] == [FIRST_BACKOFF, 2 * FIRST_BACKOFF, 4 * FIRST_BACKOFF]
    nodes.connected()
    assert nodes.failed() == 8 * FIRST_BACKOFF  # dropped at once: the outage goes on
    nodes.connected()
    monkeypatch.setattr(nodes_module, "STABLE_SECONDS", 0.0)
    assert nodes.failed() == FIRST_BACKOFF       # consumed a while: a new outage


def test_tls_keys_without_an_amqps_url_are_warned_about(workdir):
    (workdir / "ca.pem").write_text("unused\n")
    config = load(write(workdir, EXAMPLE, 'tls_ca = "ca.pem"'), environ={})
    assert any("no broker URL is amqps://" in warning for warning in warnings(config))


HALF_SET = EXAMPLE.replace(ONE_URL, 'url = "amqp://guest@localhost:5672/%2F"')


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_url_with_a_user_and_no_password_anywhere_exits_78_naming_the_key_and_what_to_do(workdir, command):
    # the operator's case: `check` said ok, then `run` died in pika's URL parser with a TypeError
    out = logship(command, "--config", str(write(workdir, HALF_SET)))
    assert out.returncode == 78, out.stderr
    assert (f"logship: config error: {workdir / 'logship.toml'}: broker.url: names the user 'guest' but no password"
            in out.stderr)
    assert "broker.password_file" in out.stderr and "LOGSHIP_BROKER_PASSWORD" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_user_without_a_password_is_fine_once_a_file_or_the_environment_gives_one(workdir):
    (workdir / "pass").write_text("from-file\n")
    with_file = load(write(workdir, HALF_SET, 'password_file = "pass"'), environ={})
    assert with_file.broker.url == "amqp://guest:from-file@localhost:5672/%2F"
    from_env = load(write(workdir, HALF_SET), environ={"LOGSHIP_BROKER_PASSWORD": "env"})
    assert from_env.broker.url == "amqp://guest:env@localhost:5672/%2F"


def test_a_cluster_node_without_a_password_is_named_by_its_index(workdir):
    text = EXAMPLE.replace(ONE_URL, 'url = ["amqp://u:p@mq1:5672/v", "amqp://u@mq2:5672/v"]')
    with pytest.raises(ConfigError) as caught:
        load(write(workdir, text), environ={})
    assert caught.value.key == "broker.url[1]" and "no password" in caught.value.problem
    with pytest.raises(ConfigError) as caught:
        load(write(workdir, EXAMPLE), environ={"LOGSHIP_BROKER_URL": "amqp://u@mq1:5672/v"})
    assert caught.value.key == "LOGSHIP_BROKER_URL"


@pytest.mark.parametrize("query, words", [
    ("heartbeat=often", "Invalid heartbeat value 'often'"),
    ("no_such_parameter=1", "Unknown URL parameter: 'no_such_parameter'"),
    ("channel_max=0", "channel_max must be <= 65535"),
    ("socket_timeout=-1", "socket_timeout"),
])
def test_a_url_pika_would_refuse_is_a_config_error_at_load_not_at_connect(workdir, query, words):
    text = EXAMPLE.replace(ONE_URL, f'url = "amqp://guest:s3cret@localhost:5672/%2F?{query}"')
    out = logship("run", "--config", str(write(workdir, text)))
    assert out.returncode == 78, out.stderr
    assert "broker.url: pika cannot use this URL" in out.stderr and words in out.stderr
    assert "s3cret" not in out.stderr and "Traceback" not in out.stderr


def test_a_url_from_the_environment_that_pika_would_refuse_names_the_variable_and_the_node(workdir):
    environ = {"LOGSHIP_BROKER_URL": "amqp://u:p@mq1:5672/v amqp://u:p@mq2:5672/v?heartbeat=often"}
    with pytest.raises(ConfigError) as caught:
        load(write(workdir, EXAMPLE), environ=environ)  # settings.load: what check, run and a reload use
    assert caught.value.key == "LOGSHIP_BROKER_URL[1]" and "pika cannot use this URL" in caught.value.problem
