"""`logship check --broker` against the test run's RabbitMQ node, and the daemon's own warnings about shared queues."""
from __future__ import annotations

import pika

from helpers import TRACE_OUTPUT, RunningDaemon, line_count, logship, queue_depth, wait_for
from mailerq import OtherConsumer

TRACE = '{{ record.attempt_number }}\n'


def config(workdir, url: str, queues: str):
    """A config with `queues` tables and one file output."""
    (workdir / "formats" / "trace.j2").write_text(TRACE)
    path = workdir / "logship.toml"
    path.write_text(f'[broker]\nurl = "{url}"\n\n{queues}\n{TRACE_OUTPUT}')
    return path


def declare(url: str, *queues: tuple[str, dict | None]) -> None:
    """Queues as another program (MailerQ) declared them, and its exchange."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare("mailerq", "direct", durable=True)
    for name, arguments in queues:
        channel.queue_declare(name, durable=True, arguments=arguments)
    connection.close()


COPY = ('[[queues]]\nname = "logship.results"\nrole = "results"\n'
        'bind = [{ exchange = "mailerq", routing_key = "results" }]\nmax_length = 1000\n')


def test_a_copy_not_yet_declared_is_said_and_nothing_is_changed_on_the_broker(workdir, vhost_url):
    declare(vhost_url)
    out = logship("check", "--broker", "--config", str(config(workdir, vhost_url, COPY)))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "queue logship.results: does not exist yet; logship declares it as it connects" in out.stdout
    assert "node amqp://guest:***@127.0.0.1:" in out.stdout and ": reachable (RabbitMQ 3." in out.stdout
    assert "x-max-length 1000, x-overflow drop-head" in out.stdout
    assert "bound to exchange mailerq (it exists) with routing key 'results'" in out.stdout
    connection = pika.BlockingConnection(pika.URLParameters(vhost_url))
    try:
        connection.channel().queue_declare("logship.results", passive=True)
        raise AssertionError("check --broker declared the queue")
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 404
    finally:
        if connection.is_open:
            connection.close()


def test_a_queue_with_other_arguments_than_the_config_exits_78_naming_the_key(workdir, vhost_url):
    declare(vhost_url, ("logship.results", {"x-max-length": 500, "x-overflow": "drop-head"}))
    out = logship("check", "--broker", "--config", str(config(workdir, vhost_url, COPY)))
    assert out.returncode == 78, out.stdout + out.stderr
    assert "queues[0].max_length: queue 'logship.results' already exists with other arguments" in out.stderr
    assert "queue logship.results: exists, 0 messages ready, 0 consumers" in out.stdout


def test_a_binding_to_an_exchange_that_is_not_there_exits_78(workdir, vhost_url):
    out = logship("check", "--broker", "--config", str(config(workdir, vhost_url, COPY.replace(
        'exchange = "mailerq"', 'exchange = "mailerqq"'))))
    assert out.returncode == 78, out.stdout + out.stderr
    assert "queues[0].bind[0].exchange: no exchange 'mailerqq' on this vhost" in out.stderr


def test_a_queue_consumed_directly_that_another_program_reads_is_a_loud_warning_in_check_and_the_daemon(
        workdir, vhost_url):
    declare(vhost_url, ("results", None))
    other = OtherConsumer(vhost_url, "results")
    try:
        path = config(workdir, vhost_url, '[[queues]]\nname = "results"\n')
        out = logship("check", "--broker", "--config", str(path))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "queue results: exists, 0 messages ready, 1 consumers" in out.stdout
        assert "WARNING: queue 'results' already has 1 other consumer: each message goes to one of them" in out.stderr
        with RunningDaemon(path) as daemon:
            wait_for(lambda: "consuming" in daemon.messages(), what="consuming")
            assert daemon.stop() == 0
        shared = [e for e in daemon.log() if "already has 1 other consumer" in e["message"]]
        assert shared and shared[0]["level"] == "WARNING" and shared[0]["queue"] == "results"
    finally:
        other.close()


def test_the_daemon_waits_for_the_exchange_to_bind_to_and_binds_once_it_exists(workdir, vhost_url):
    path = config(workdir, vhost_url, COPY)
    with RunningDaemon(path) as daemon:
        wait_for(lambda: any(m.startswith("the exchange to bind to does not exist") for m in daemon.messages()),
                 what="the missing exchange said")
        declare(vhost_url)
        wait_for(lambda: "consuming" in daemon.messages(), what="consuming once the exchange exists")
        connection = pika.BlockingConnection(pika.URLParameters(vhost_url))
        connection.channel().basic_publish("mailerq", "results", b'{"results": []}')
        connection.close()
        wait_for(lambda: queue_depth(vhost_url, "logship.results") == 0 and "message quarantined" in
                 daemon.messages(), what="the copy delivered to logship")
        assert daemon.stop() == 0


def test_every_node_is_tried_and_one_that_answers_is_enough(workdir, vhost_url):
    declare(vhost_url)
    dead = "amqp://guest:guest@127.0.0.1:1/%2F"
    path = config(workdir, vhost_url, COPY)
    path.write_text(path.read_text().replace(f'url = "{vhost_url}"', f'url = ["{dead}", "{vhost_url}"]'))
    out = logship("check", "--broker", "--config", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "node amqp://guest:***@127.0.0.1:1/%2F: unreachable" in out.stdout
    assert out.stdout.count(": reachable (RabbitMQ") == 1


def test_a_node_that_refuses_logships_user_exits_78(workdir, vhost_url):
    wrong = vhost_url.replace("guest:guest@", "guest:wrong@")
    out = logship("check", "--broker", "--config", str(config(workdir, wrong, COPY)))
    assert out.returncode == 78, out.stdout + out.stderr
    assert "refused logship's user" in out.stdout and "wrong" not in out.stdout + out.stderr


def test_a_deleted_copy_is_declared_and_bound_again_at_the_reconnect(workdir, vhost_url):
    declare(vhost_url)
    path = config(workdir, vhost_url, COPY)
    output = workdir / "log" / "all.jsonl"
    body = (b'{"recipient": "a@example.org", "results": '
            b'[{"state": "message", "result": "accepted", "time": "2026-12-02 12:00:00"}]}')
    with RunningDaemon(path) as daemon:
        wait_for(lambda: "consuming" in daemon.messages(), what="consuming")
        connection = pika.BlockingConnection(pika.URLParameters(vhost_url))
        connection.channel().queue_delete("logship.results")
        wait_for(lambda: daemon.messages().count("consuming") == 2, what="consuming again")
        connection.channel().basic_publish("mailerq", "results", body)
        connection.close()
        wait_for(lambda: line_count(output) == 1, what="the record from the copy declared again")
        assert daemon.stop() == 0
