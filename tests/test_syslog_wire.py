"""Syslog messages as bytes: headers, STRUCTURED-DATA, control characters, size, framing, config."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from logship.config.load import Route
from logship.settings import load
from logship.config.outputs import SyslogOutput
from logship.errors import ConfigError
from logship.render.record import Source, decode, records
from logship.sinks.syslog.message import MessageBuilder
from logship.sinks.syslog.wire import TRUNCATION_MARKER, fit, frame, header_token, param_value, rfc3164_head, sd_name_problem

SAMPLES = Path(__file__).parent / "samples"


def sample_record(name: str = "hostile-fields.json") -> dict:
    """The last record of a sample message."""
    return records(decode((SAMPLES / name).read_bytes()), Source("results"), 1_700_000_000.0)[-1]


def output(**keys: object) -> SyslogOutput:
    """A syslog output config with `keys` over the defaults."""
    return SyslogOutput(name="syslog", type="syslog", **{"address": "tcp://127.0.0.1:5514", **keys})


def test_param_values_escape_quote_backslash_and_closing_bracket_and_nothing_else():
    assert param_value('a"b\\c]d[e=f') == 'a\\"b\\\\c\\]d[e=f'
    assert param_value("x\r\ny\x00\x1b") == "x\\\\r\\\\ny\\\\u0000\\\\u001b"


@pytest.mark.parametrize("name, valid", [
    ("logship@32473", True), ("origin", True), ("a", True), ("x" * 32, True),
    ("x" * 33, False), ("a b", False), ("a=b", False), ('a"b', False), ("a]b", False), ("", False),
    ("é", False), ("a\nb", False)])
def test_sd_names_follow_rfc5424(name, valid):
    assert (sd_name_problem(name) is None) is valid


@pytest.mark.parametrize("sd_id, valid", [("logship@32473", True), ("meta", True), ("delivery", False),
                                          ("x@abc", False)])
def test_an_unregistered_sd_id_needs_an_enterprise_number(sd_id, valid):
    assert (sd_name_problem(sd_id, sd_id=True) is None) is valid


def test_header_fields_are_printable_ascii_without_spaces():
    assert header_token("mail host\r\nX", 255) == "mail_host__X"
    assert header_token("héllo", 255) == "h_llo"
    assert header_token("", 48) == "-"
    assert header_token("x" * 40, 32) == "x" * 32


def test_hostile_fields_make_exactly_one_message_without_control_characters():
    builder = MessageBuilder(output(hostname="evil\nhost", app_name="app name", msgid="{{ attempt.mta }}",
                                    structured_data={"x@1": {"d": "{{ attempt.description }}"}}))
    record = sample_record()
    wire = builder.build(record, "line " + record["attempt"]["description"])
    length, _, message = wire.partition(b" ")
    assert int(length) == len(message)
    assert not re.search(rb"[\x00-\x1f\x7f]", wire)
    text = message.decode()
    assert "\u2028" not in text and "\x85" not in text
    pri_version, ts, host, app, procid, msgid, rest = text.split(" ", 6)
    assert (pri_version, ts) == ("<20>1", "2026-11-27T11:00:00.000Z")  # mail.warning: a bounce
    assert (host, app, msgid) == ("evil_host", "app_name", "evil.example__FAKE_LOG_LINE")
    assert rest.startswith('[x@1 d="rejected\\\\nuser=admin result=accepted \\"quoted\\" \\] \\\\ ')


def test_the_severity_follows_the_outcome_table_and_a_route_or_the_output_overrides_it():
    builder = MessageBuilder(output())
    record = sample_record()                       # a bounce: warning (4), facility mail (2)
    assert builder.build(record, "x").split(b" ")[1] == b"<20>1"
    assert builder.build(record, "x", Route("f", "o", severity="crit")).split(b" ")[1] == b"<18>1"
    delivered = sample_record("accepted-tls.json")
    assert builder.build(delivered, "x").split(b" ")[1] == b"<22>1"   # info
    quiet = MessageBuilder(output(severities={"bounced": "notice"}, facility="local3"))
    assert quiet.build(record, "x").split(b" ")[1] == b"<157>1"       # local3.notice


def test_rfc3164_has_a_hostname_on_the_network_and_none_on_a_local_socket():
    record = sample_record()
    network = MessageBuilder(output(protocol="rfc3164", hostname="mx1", procid="42")).build(record, "hello")
    assert network.split(b" ", 1)[1] == b"<20>Nov 27 11:00:00 mx1 logship[42]: hello"
    local = MessageBuilder(output(protocol="rfc3164", address="unix:///tmp/x.sock", procid="42"))
    assert local.build(record, "hello") == b"<20>Nov 27 11:00:00 logship[42]: hello"
    assert rfc3164_head(20, 0, "h", "bad:tag[x] y", "") == "<20>Jan  1 00:00:00 h bad_tag_x__y: "


def test_an_oversized_message_is_cut_to_max_size_with_the_marker_and_whole_characters():
    head = "<20>1 - - - - - - "
    for size in range(1024, 1040):
        message = fit(head, "日本" * 1000, size)
        assert len(message) <= size and len(message) >= size - 2
        assert message.decode("utf-8").endswith(TRUNCATION_MARKER)
    assert fit(head, "short", 1024) == (head + "short").encode()


def test_structured_data_too_big_for_max_size_is_dropped_but_the_message_still_goes():
    builder = MessageBuilder(output(max_size=1024, structured_data={"x@1": {"big": "{{ 'y' * 5000 }}"}}))
    wire = builder.build(sample_record(), "the line")
    message = wire.partition(b" ")[2]
    assert len(message) <= 1024 and message.endswith(b" - the line")


def test_streams_are_octet_counted_by_default_or_lf_terminated_and_datagrams_are_bare():
    assert frame(b"<1>1 x", "octet-counting") == b"6 <1>1 x"
    assert frame(b"<1>1 x", "lf") == b"<1>1 x\n"
    assert frame(b"<1>1 x", None) == b"<1>1 x"
    assert MessageBuilder(output(address="udp://[::1]:514")).build(sample_record(), "x").startswith(b"<20>1 ")
    assert MessageBuilder(output(framing="lf")).build(sample_record(), "x").endswith(b" x\n")


def test_a_header_template_that_fails_leaves_the_field_empty_and_the_record_still_goes():
    builder = MessageBuilder(output(msgid="{{ 1 / 0 }}", structured_data={"x@1": {"p": "{{ nope() }}"}}))
    message = builder.build(sample_record(), "line").partition(b" ")[2]
    assert message.split(b" ", 5)[5] == b'- [x@1 p=""] line'


ISSUE_EXAMPLE = """
[[outputs]]
name = "syslog"
type = "syslog"
address = "tcp://127.0.0.1:5514"   # udp://host:port, tcp://…, tls://…, unix:///dev/log
protocol = "rfc5424"                # or "rfc3164"
facility = "mail"
"""


def write(tmp_path: Path, outputs: str, route: str = "") -> Path:
    """A config with one format and `outputs`, routed to the output called syslog."""
    (tmp_path / "formats").mkdir(exist_ok=True)
    (tmp_path / "formats" / "line.j2").write_text("{{ message.recipient }}")
    path = tmp_path / "logship.toml"
    path.write_text(f'[[queues]]\nname = "results"\n{outputs}\n[[routes]]\nformat = "line"\noutput = "syslog"\n{route}')
    return path


def test_the_issue_example_config_loads_as_written(tmp_path):
    config = load(write(tmp_path, ISSUE_EXAMPLE))
    syslog = config.output("syslog")
    assert isinstance(syslog, SyslogOutput)
    assert (syslog.address, syslog.protocol, syslog.facility) == ("tcp://127.0.0.1:5514", "rfc5424", "mail")


@pytest.mark.parametrize("extra, key, problem", [
    ('facility = "email"', "outputs[0].facility", "must be one of"),
    ('address = "http://x"', "outputs[0].address", "udp://, tcp://, tls:// or unix://"),
    ('address = "unix://dev/log"', "outputs[0].address", "unix:///absolute/path"),
    ('address = "tcp://h:99999"', "outputs[0].address", "port"),
    ('structured_data = { delivery = { a = "x" } }', "outputs[0].structured_data", "enterprise number"),
    ('structured_data = { "d@1" = { "a b" = "x" } }', "outputs[0].structured_data", "not an SD-NAME"),
    ('msgid = "{{ record.outcome "', "outputs[0].msgid", "invalid template"),
    ('max_size = 100', "outputs[0].max_size", "from 1024"),
    ('framing = "lf"\naddress = "udp://127.0.0.1:514"', "outputs[0].framing", "datagrams"),
    ('tls_ca = "ca.pem"', "outputs[0].tls_ca", "only for tls://"),
    ('address = "tls://127.0.0.1"\ntls_ca = "missing.pem"', "outputs[0].tls_ca", "cannot load"),
    ('severities = { delivered = "loud" }', "outputs[0].severities", "not a severity"),
])
def test_a_wrong_syslog_key_is_a_config_error_naming_it(tmp_path, extra, key, problem):
    with pytest.raises(ConfigError) as caught:
        base = '[[outputs]]\nname = "syslog"\ntype = "syslog"\n'
        address = "" if "address" in extra else 'address = "tcp://127.0.0.1:5514"\n'
        load(write(tmp_path, base + address + extra + "\n"))
    assert caught.value.key == key and problem in caught.value.problem


def test_a_route_severity_must_be_a_syslog_severity(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, ISSUE_EXAMPLE, 'severity = "urgent"\n'))
    assert caught.value.key == "routes[0].severity"
    assert load(write(tmp_path, ISSUE_EXAMPLE, 'severity = "notice"\n')).routes[0].severity == "notice"


def test_the_documented_syslog_example_loads_and_routes_severities(tmp_path):
    section = (Path(__file__).parent.parent / "docs" / "syslog-output.md").read_text()
    example = section[section.index("```toml") + 7:section.index("```", section.index("```toml") + 7)]
    (tmp_path / "formats").mkdir()
    for name in ("logfmt", "mailerq"):
        (tmp_path / "formats" / f"{name}.j2").write_text("{{ message.recipient }}")
    path = tmp_path / "logship.toml"
    path.write_text('[[queues]]\nname = "results"\n' + example)
    config = load(path)
    syslog = config.output("syslog")
    assert syslog.structured_data == {"delivery@32473": {"recipient": "{{ message.recipient }}",
                                                         "status": "{{ attempt.status }}"}}
    assert [r.severity for r in config.routes] == [None, "crit"]
