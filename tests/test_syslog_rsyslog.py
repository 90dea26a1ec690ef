"""The syslog output against a real rsyslogd: UDP, TCP, TLS and a unix socket, fields parsed back."""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest

from helpers import wait_for
from logship.errors import OutputError
from logship.render.formats import one_line
from logship.sinks.syslog.sink import SyslogSink
from logship.sinks.syslog.wire import OUTCOME_SEVERITY, SEVERITIES, TRUNCATION_MARKER
from syslog_receivers import Rsyslog, make_certificates
from syslog_ship import SD, output, rendered, sample_records, ship

UDP = 'module(load="imudp")\ninput(type="imudp" address="127.0.0.1" port="{port}" rcvbufSize="4m")'
TCP = 'module(load="imtcp")\ninput(type="imtcp" address="127.0.0.1" port="{port}")'
# the regular parser chain on a private socket, so RFC 5424 is parsed as such
UNIX_5424 = ('module(load="imuxsock" SysSock.Use="off")\ninput(type="imuxsock" Socket="{socket}" '
             'UseSpecialParser="off" ParseHostname="on" IgnoreTimestamp="off" RateLimit.Interval="0")')
# imuxsock's defaults, as on /dev/log: the syslog(3) format
UNIX_LOCAL = ('module(load="imuxsock" SysSock.Use="off")\n'
              'input(type="imuxsock" Socket="{socket}" IgnoreTimestamp="off" RateLimit.Interval="0")')
TLS = ('module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="x509/certvalid")\n'
       'input(type="imtcp" address="127.0.0.1" port="{port}")')


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, Path]:
    """A CA, server and client certificates made with openssl for this module."""
    return make_certificates(tmp_path_factory.mktemp("certs"))


def expected(items: list[tuple[dict, str]]) -> list[tuple]:
    """What rsyslog must parse back for each item: severity, MSGID, MSG, STRUCTURED-DATA."""
    def sd(record: dict) -> dict:
        values = {name: one_line(str(r) if (r := _value(record, name)) is not None else "") for name in SD["delivery@32473"]}
        return {"delivery@32473": values}
    return sorted((str(SEVERITIES[OUTCOME_SEVERITY[r["record"]["outcome"]]]), r["record"]["outcome"], line,
                   repr(sd(r))) for r, line in items)


def _value(record: dict, name: str) -> object:
    """The record field each configured SD parameter renders."""
    return {"recipient": record["message"].get("recipient"), "outcome": record["record"]["outcome"],
            "code": record["attempt"].get("code"), "description": record["attempt"].get("description"),
            "subject": record["extracted"].get("subject")}[name]


def parsed(received: list[dict]) -> list[tuple]:
    """The same tuple from what rsyslog parsed."""
    return sorted((m["severity"], m["msgid"], m["msg"], repr(m["sd"])) for m in received)


def deliver(receiver: Rsyslog, address: str, items: list[tuple[dict, str]], **keys: object) -> list[dict]:
    """Ship `items` to the receiver and return what it parsed once all have arrived."""
    sink = SyslogSink.from_config(output(address, structured_data=SD, **keys))
    try:
        ship(sink, items)
    finally:
        sink.close()
    wait_for(lambda: len(receiver.lines()) >= len(items), timeout=15, what=f"{len(items)} messages")
    return receiver.received()


@pytest.mark.parametrize("inputs, scheme, keys", [
    (UDP, "udp", {}), (TCP, "tcp", {}), (TCP, "tcp", {"framing": "lf"}), (UNIX_5424, "unix", {})],
    ids=["udp", "tcp-octet-counting", "tcp-lf", "unix"])
def test_every_sample_arrives_once_with_its_rfc5424_fields_parsed_back(tmp_path, inputs, scheme, keys):
    items = rendered(sample_records(), ("json", "mailerq", "logfmt"))
    assert all(len(line.encode()) < 1500 for _r, line in items), "a sample would be truncated"
    with Rsyslog(tmp_path, inputs) as rsyslog:
        address = f"unix://{rsyslog.socket}" if scheme == "unix" else f"{scheme}://127.0.0.1:{rsyslog.port}"
        received = deliver(rsyslog, address, items, **keys)
    assert parsed(received) == expected(items)
    first = received[0]
    assert (first["version"], first["facility"], first["app_name"]) == ("1", "2", "logship")
    assert (first["hostname"], first["procid"]) == (socket.gethostname(), str(os.getpid()))
    times = {r["attempt"]["time"].replace(" ", "T") + ".000Z" for r, _line in items}
    assert {m["timestamp"] for m in received} <= times


def test_rfc3164_on_a_unix_socket_reads_like_syslog3_to_imuxsock_defaults(tmp_path):
    items = rendered(sample_records(), ("mailerq",))
    with Rsyslog(tmp_path, UNIX_LOCAL) as rsyslog:
        received = deliver(rsyslog, f"unix://{rsyslog.socket}", items, protocol="rfc3164")
    assert sorted(m["msg"].lstrip(" ") for m in received) == sorted(line for _r, line in items)
    assert {(m["app_name"], m["procid"], m["facility"]) for m in received} == {("logship", str(os.getpid()), "2")}


def test_tls_verifies_the_receiver_and_presents_a_client_certificate(tmp_path, certificates):
    items = rendered(sample_records(), ("json",))
    tls = (f'DefaultNetstreamDriverCAFile="{certificates["ca"]}" DefaultNetstreamDriverCertFile='
           f'"{certificates["server"]}" DefaultNetstreamDriverKeyFile="{certificates["server-key"]}"')
    with Rsyslog(tmp_path, TLS, tls) as rsyslog:
        received = deliver(rsyslog, f"tls://127.0.0.1:{rsyslog.port}", items, tls_ca=str(certificates["ca"]),
                           tls_cert=str(certificates["client"]), tls_key=str(certificates["client-key"]))
    assert parsed(received) == expected(items)


@pytest.mark.parametrize("client, error", [("untrusted-server", "CERTIFICATE_VERIFY_FAILED"),
                                           ("no-client-certificate", "CERTIFICATE_REQUIRED|closed")])
def test_a_tls_connection_the_certificates_refuse_sends_nothing_and_the_records_wait(tmp_path, certificates, caplog,
                                                                                    client, error):
    tls = (f'DefaultNetstreamDriverCAFile="{certificates["ca"]}" DefaultNetstreamDriverCertFile='
           f'"{certificates["server"]}" DefaultNetstreamDriverKeyFile="{certificates["server-key"]}"')
    ca = certificates["other-ca" if client == "untrusted-server" else "ca"]
    items = rendered(sample_records()[:3], ("json",))
    with Rsyslog(tmp_path, TLS, tls) as rsyslog, caplog.at_level(logging.INFO, "logship"):
        sink = SyslogSink.from_config(output(f"tls://127.0.0.1:{rsyslog.port}", tls_ca=str(ca), reconnect_max=0.2))
        try:
            with pytest.raises(OutputError, match=error):
                ship(sink, items, timeout=2)
            assert sink.buffered == 3
        finally:
            sink.close()
        assert rsyslog.lines() == []
    warnings = [r for r in caplog.records if r.getMessage().startswith("syslog receiver unreachable")]
    assert len(warnings) == 1, "one log line per outage, however many retries"


@pytest.mark.parametrize("inputs, scheme, keys, size", [
    (TCP, "tcp", {}, 8096), (TCP, "tcp", {"framing": "lf"}, 8096), (UNIX_5424, "unix", {}, 8096), (UDP, "udp", {}, 2048)],
    ids=["tcp-octet-counting", "tcp-lf", "unix", "udp"])
def test_an_oversized_message_arrives_whole_cut_to_the_default_size_with_the_marker(tmp_path, inputs, scheme, keys, size):
    record = sample_records()[0]
    items = [(record, "start " + "é" * 20000 + " end"), (record, "small")]
    with Rsyslog(tmp_path, inputs) as rsyslog:  # rsyslog's default maxMessageSize
        address = f"unix://{rsyslog.socket}" if scheme == "unix" else f"{scheme}://127.0.0.1:{rsyslog.port}"
        received = deliver(rsyslog, address, items, **keys)
        assert "oversize" not in (tmp_path / "stdout").read_text()
    big, small = sorted(received, key=lambda m: len(m["msg"]), reverse=True)
    assert big["msg"].startswith("start éé") and big["msg"].endswith("é" + TRUNCATION_MARKER)
    assert size - 2 <= len(wire_size(big)) <= size
    assert small["msg"] == "small"


def wire_size(message: dict) -> bytes:
    """The RFC 5424 message rsyslog parsed, rebuilt to measure its size."""
    sd = "".join("[" + sd_id + "".join(f' {k}="{v}"' for k, v in params.items()) + "]"
                 for sd_id, params in message["sd"].items()) or "-"
    return (f'<{int(message["facility"]) * 8 + int(message["severity"])}>1 {message["timestamp"]} '
            f'{message["hostname"]} {message["app_name"]} {message["procid"]} {message["msgid"]} {sd} '
            f'{message["msg"]}').encode()


@pytest.mark.parametrize("inputs, scheme", [(TCP, "tcp"), (UNIX_5424, "unix")], ids=["tcp", "unix"])
def test_a_restarted_receiver_loses_nothing_and_the_outage_is_logged_once(tmp_path, caplog, inputs, scheme):
    records = sample_records()
    batches = {when: [(r, f"{when} {i}") for i, r in enumerate(records * 20)] for when in ("before", "during", "after")}
    rsyslog = Rsyslog(tmp_path, inputs)
    rsyslog.start()
    address = f"unix://{rsyslog.socket}" if scheme == "unix" else f"{scheme}://127.0.0.1:{rsyslog.port}"
    sink = SyslogSink.from_config(output(address, reconnect_max=0.5))
    try:
        with caplog.at_level(logging.INFO, "logship"):
            ship(sink, batches["before"])
            wait_for(lambda: len(rsyslog.lines()) == len(batches["before"]), what="the first messages")
            rsyslog.stop()
            for record, line in batches["during"]:
                sink.write(record, line)
            with pytest.raises(OutputError):
                sink.flush()
            rsyslog.start()
            ship(sink, [])
            sink.reopen()  # SIGHUP: a new connection, nothing lost either
            ship(sink, batches["after"])
            wait_for(lambda: len(rsyslog.lines()) >= 3 * len(batches["before"]), what="every message")
    finally:
        sink.close()
        rsyslog.stop()
    assert sorted(m["msg"] for m in rsyslog.received()) == sorted(line for b in batches.values() for _r, line in b)
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("syslog receiver unreachable; buffering and reconnecting") == 1
    assert messages.count("syslog receiver reachable again") == 1
