"""The [[queues]] table's bind and caps, offline: what is declared, what is refused, what check warns about."""
from __future__ import annotations

from helpers import TRACE_OUTPUT, logship
from logship.config.load import load

BOUND = ('[[queues]]\nname = "logship.results"\nrole = "results"\n'
         'bind = [{ exchange = "mailerq", routing_key = "success" },\n'
         '        { exchange = "mailerq", routing_key = "failures" }]\n')


def write(workdir, queues: str):
    """A config with `queues` and one file output in the shipped json format."""
    path = workdir / "logship.toml"
    path.write_text(queues + TRACE_OUTPUT.replace('"trace"', '"json"'))
    return path


def test_a_bound_queue_is_declared_with_its_caps_as_rabbitmq_arguments(workdir):
    config = load(write(workdir, BOUND + "max_length = 5000\nmax_length_bytes = 1048576\nmessage_ttl = 86400\n"),
                  environ={})
    queue = config.queues[0]
    assert queue.declare and [(b.exchange, b.routing_key) for b in queue.bind] == [("mailerq", "success"),
                                                                                  ("mailerq", "failures")]
    assert queue.arguments == {"x-queue-type": "classic", "x-max-length": 5000, "x-max-length-bytes": 1048576,
                               "x-overflow": "drop-head", "x-message-ttl": 86_400_000}


def test_check_warns_about_a_bound_queue_with_no_cap(workdir):
    out = logship("check", "--config", str(write(workdir, BOUND)))
    assert out.returncode == 0, out.stderr
    assert "warning: queues[0] ('logship.results') is bound to an exchange with no max_length" in out.stderr
    capped = logship("check", "--config", str(write(workdir, BOUND + "max_length = 10\n")))
    assert "no max_length" not in capped.stderr
    assert ("queue logship.results: role results, scope all, bound to exchange mailerq with success, failures, "
            "capped at max_length 10") in capped.stdout


def test_a_cap_on_a_queue_logship_does_not_declare_exits_78_naming_the_key(workdir):
    out = logship("check", "--config", str(write(workdir, '[[queues]]\nname = "results"\nmax_length = 10\n')))
    assert out.returncode == 78
    assert f"{workdir / 'logship.toml'}: queues[0].max_length: is an argument of the queue's declaration" in out.stderr


def test_binding_to_the_default_exchange_exits_78_naming_the_key(workdir):
    out = logship("check", "--config", str(write(workdir, BOUND.replace('exchange = "mailerq"', 'exchange = ""', 1))))
    assert out.returncode == 78
    assert "queues[0].bind[0].exchange: the default exchange (empty name) cannot be bound to" in out.stderr


def test_a_bound_copy_of_the_retries_is_read_newest_attempt_only_and_the_finals_then_latest(workdir):
    retries = ('[[queues]]\nname = "logship.retries"\nrole = "retries"\nmax_length = 10\n'
               'bind = [{ exchange = "mailerq", routing_key = "retries" }]\n')
    config = load(write(workdir, BOUND + "max_length = 10\n" + retries), environ={})
    assert [(q.name, q.scope, q.final) for q in config.queues] == [("logship.results", "latest", True),
                                                                   ("logship.retries", "latest", False)]


def test_a_copy_named_after_the_key_it_binds_is_warned_about(workdir):
    out = logship("check", "--config", str(write(workdir, BOUND.replace("logship.results", "success")
                                                 + "max_length = 10\n")))
    assert "bound with its own name as routing key: that is the publisher's own queue" in out.stderr


def test_a_queue_named_retries_said_to_be_a_5_14_retry_queue_is_consumed(workdir):
    config = load(write(workdir, '[[queues]]\nname = "retries"\nrole = "retry"\n'), environ={})
    assert config.queues[0].scope == "latest"
    out = logship("check", "--config", str(write(workdir, '[[queues]]\nname = "retries"\n')))
    assert out.returncode == 78 and "queues[0].name: 'retries' holds e-mails MailerQ will send again" in out.stderr
