"""`logship init --from-mailerq`: MailerQ's config file read, the queues chosen per version and exchange, no broker."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from helpers import logship

PASSWORD = "mq#pass/word?x"  # unquoted '#', '/' and '?', as MailerQ's file may hold them


def init(tmp_path: Path, text: str, *extra: str):
    """Run `init --from-mailerq` on a MailerQ config file holding `text`; the run and the TOML it wrote."""
    (tmp_path / "config.txt").write_text(text)
    out = logship("init", "--from-mailerq", str(tmp_path / "config.txt"), str(tmp_path / "etc"), *extra)
    if out.returncode == 0:  # step 4 of install.md: the password file `check` asks for
        (tmp_path / "etc" / "broker.password").write_text("logship-pw\n")
    written = tomllib.loads((tmp_path / "etc" / "logship.toml").read_text()) if out.returncode == 0 else {}
    return out, written


def queues(written: dict) -> list[tuple]:
    """(name, role, scope, routing keys) of each queue written."""
    return [(q["name"], q["role"], q.get("scope"), [b["routing_key"] for b in q.get("bind", [])])
            for q in written["queues"]]


def test_a_named_exchange_up_to_5_13_gets_copies_of_results_and_retry_bound_and_capped(tmp_path):
    out, written = init(tmp_path, f"rabbitmq-address: amqp://mailerq:{PASSWORD}@rabbit.example.net/mail\n"
                        "rabbitmq-exchange: mailerq\nrabbitmq-results: results\nrabbitmq-retry: retry\n"
                        "rabbitmq-success: success\nrabbitmq-failure: failures\n")
    assert out.returncode == 0, out.stderr
    assert queues(written) == [("logship.results", "results", None, ["results"]),
                               ("logship.retry", "retry", None, ["retry"])]
    assert all(q["max_length"] > 0 and q["max_length_bytes"] > 0 for q in written["queues"])
    assert written["broker"]["url"] == "amqp://logship@rabbit.example.net/mail"
    assert "rabbitmq-success and rabbitmq-failure carry the finals of rabbitmq-results again" in out.stdout
    assert ("rabbitmqctl set_permissions -p 'mail' logship '^(logship\\.results|logship\\.retry)$' "
            "'^(logship\\.results|logship\\.retry)$' '^(logship\\.results|logship\\.retry|mailerq)$'") in out.stdout
    assert PASSWORD not in out.stdout + (tmp_path / "etc" / "logship.toml").read_text()
    assert logship("check", "--config", str(tmp_path / "etc" / "logship.toml")).returncode == 0


def test_the_default_exchange_consumes_mailerqs_queues_directly_and_says_what_to_change(tmp_path):
    out, written = init(tmp_path, "rabbitmq-address: amqp://guest:guest@localhost/\nrabbitmq-exchange:\n"
                        "rabbitmq-results: results\nrabbitmq-retry: retry\n")
    assert queues(written) == [("results", "results", None, []), ("retry", "retry", None, [])]
    assert "cannot be bound to" in out.stdout and "set `rabbitmq-exchange: mailerq` in MailerQ" in out.stdout
    assert "set_permissions -p '/' logship '^$' '^$' '^(results|retry)$'" in out.stdout
    assert written["broker"]["url"] == "amqp://logship@localhost/%2F"


def test_5_15_copies_success_and_failure_into_one_final_queue_and_the_retries_read_as_retries(tmp_path):
    out, written = init(tmp_path, "rabbitmq-address: amqps://mq:pw@n1:5671/v,amqps://mq:pw@n2:5671/v\n"
                        "rabbitmq-verify: false\nrabbitmq-success: success\nrabbitmq-failure: failures\n"
                        "rabbitmq-retries: retries\nrabbitmq-results: results\nrabbitmq-encoding: gzip\n")
    assert out.returncode == 0, out.stderr
    assert queues(written) == [("logship.results", "results", None, ["success", "failures"]),
                               ("logship.retries", "retries", None, ["retries"])]
    assert {b["exchange"] for q in written["queues"] for b in q["bind"]} == {"mailerq"}  # 5.14+'s default
    assert written["broker"]["url"] == ["amqps://logship@n1:5671/v", "amqps://logship@n2:5671/v"]
    assert written["broker"]["tls_verify"] is False
    assert "rabbitmq-results is set, but MailerQ 5.15 and later ignore it" in out.stdout
    check = logship("check", "--config", str(tmp_path / "etc" / "logship.toml"))
    assert "queue logship.retries: role retries, scope latest" in check.stdout
    assert "queue logship.results: role results, scope latest" in check.stdout


def test_5_15_with_retries_to_the_outbox_taps_only_the_finals(tmp_path):
    out, written = init(tmp_path, "rabbitmq-exchange: mailerq\nrabbitmq-success: success\n"
                        "rabbitmq-failure: failures\nrabbitmq-retries: outbox\n")
    assert queues(written) == [("logship.results", "results", None, ["success", "failures"])]
    assert "sends retries back to the outbox" in out.stdout
    check = logship("check", "--config", str(tmp_path / "etc" / "logship.toml"))
    assert "queue logship.results: role results, scope all" in check.stdout


def test_finals_and_retries_under_one_name_are_one_queue_read_newest_attempt_only(tmp_path):
    _out, written = init(tmp_path, "rabbitmq-results: results\nrabbitmq-retry: results\n",
                         "--mailerq-version", "5.14")
    assert queues(written) == [("logship.results", "results", "latest", ["results"])]


def test_an_unset_exchange_up_to_5_13_is_the_default_one_and_the_note_says_so(tmp_path):
    out, written = init(tmp_path, "rabbitmq-results: results\nrabbitmq-retry: retry\n")
    assert queues(written)[0] == ("results", "results", None, [])
    assert "rabbitmq-exchange is not set" in out.stdout and "--mailerq-version" in out.stdout


@pytest.mark.parametrize("text, key", [("rabbitmq-results results\n", "line 1"),
                                       ("rabbitmq-address: http://x/\nrabbitmq-results: r\n", "rabbitmq-address"),
                                       ("rabbitmq-exchange: mailerq\n", "rabbitmq-results")])
def test_a_mailerq_file_logship_cannot_use_exits_78_naming_the_file_and_the_key(tmp_path, text, key):
    out, _written = init(tmp_path, text)
    assert out.returncode == 78, out.stdout + out.stderr
    assert f"{tmp_path / 'config.txt'}: {key}: " in out.stderr
    assert not (tmp_path / "etc" / "logship.toml").exists()


def test_the_password_file_is_named_until_it_exists_and_mailerqs_password_is_never_used(tmp_path):
    mailerq = tmp_path / "config.txt"
    mailerq.write_text(f"rabbitmq-address: amqp://mailerq:{PASSWORD}@mq/\nrabbitmq-results: results\n")
    out = logship("init", "--from-mailerq", str(mailerq), str(tmp_path / "etc"))
    assert out.returncode == 0
    assert f"to do: put logship's password in {tmp_path / 'etc' / 'broker.password'}" in out.stdout
    check = logship("check", "--config", str(tmp_path / "etc" / "logship.toml"))
    assert check.returncode == 78 and "broker.password_file" in check.stderr and PASSWORD not in check.stderr
