"""Formats: the shipped ones over every sample, the filters, the sandbox, one line per record."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from logship.errors import FormatError, RenderError
from logship.render.filters import epoch, iso8601, logfmt, redact, to_json
from logship.render.formats import ENV, FormatSet, compile_format, one_line
from logship.render.record import Source, decode, records

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(p for p in (ROOT / "tests" / "samples").glob("*.json") if p.name != "not-a-result.json")
SHIPPED = FormatSet.load(ROOT / "formats")
SECRETS = ["s3cr3t-relay-password", "BEGIN PRIVATE KEY", "MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA",
           "Body text"]


def all_records(path: Path) -> list[dict]:
    """Every record of a sample as read from the results queue."""
    return records(decode(path.read_bytes()), Source("results"), 0.0)


def render(source: str, record: dict) -> str:
    """Render a format given as text."""
    return one_line(ENV.from_string(source).render(record))


def test_the_four_documented_formats_ship_and_compile():
    assert set(SHIPPED.formats) >= {"mailerq", "json", "logfmt", "accounting"}
    assert not SHIPPED.errors


@pytest.mark.parametrize("name", ["mailerq", "json", "logfmt", "accounting"])
@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_renders_in_every_format_as_single_lines_without_secrets(name, path):
    for record in all_records(path):
        line = SHIPPED[name].render(record)
        assert line and len(line.splitlines()) == 1 and "\n" not in line and "\r" not in line
        assert not any(ch in line for ch in "\x00\x1b\x85\u2028\u2029")
        for secret in SECRETS:
            assert secret not in line


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_the_json_format_is_one_flat_object_per_attempt(path):
    for record in all_records(path):
        obj = json.loads(SHIPPED["json"].render(record))
        assert obj["recipient"] == record["message"]["recipient"]
        assert obj["attempt"] == record["record"]["attempt_number"]
        assert not any(isinstance(v, (dict, list)) for v in obj.values())


def test_the_json_format_keeps_hostile_text_exact():
    (record,) = all_records(ROOT / "tests" / "samples" / "hostile-fields.json")
    obj = json.loads(SHIPPED["json"].render(record))
    assert obj["description"] == record["attempt"]["description"]
    assert obj["subject"] == record["extracted"]["subject"]
    assert obj["mta"] == "evil.example\r\nFAKE LOG LINE"


def test_the_accounting_format_is_csv_under_its_header():
    (record, _) = all_records(ROOT / "tests" / "samples" / "results-queue-after-retry.json")
    header = SHIPPED["accounting"].header
    rows = list(csv.DictReader(io.StringIO(header + "\n" + SHIPPED["accounting"].render(record) + "\n")))
    assert rows[0]["type"] == "t" and rows[0]["rcpt"] == "info@example.org"
    assert rows[0]["dsnDiag"] == "smtp;451 Please come back later" and rows[0]["dsnAction"] == "delayed"


def test_the_mailerq_format_reads_like_mailerqs_send_log():
    (record,) = all_records(ROOT / "tests" / "samples" / "dns-failure.json")
    assert SHIPPED["mailerq"].render(record) == ("[2026-11-27 08:00:01] dns:error 1 <bounces@sender.example.com> "
                                                 "<someone@no-such-domain.invalid> 550 5.1.2 Host or domain name not found")


def test_a_dns_failure_without_mta_renders_missing_fields_empty():
    (record,) = all_records(ROOT / "tests" / "samples" / "dns-failure.json")
    assert render("[{{ attempt.mta }}|{{ attempt.cipher.name }}|{{ extracted.subject }}]", record) == "[||]"
    assert json.loads(render("{{ attempt.mta | json }}", record)) is None


def test_control_characters_never_split_a_record_whatever_the_template_does():
    (record,) = all_records(ROOT / "tests" / "samples" / "hostile-fields.json")
    line = render('{{ attempt.mta }}\n{{ extracted.subject }}{{ "\\n" }}{{ attempt.description }}', record)
    assert len(line.splitlines()) == 1
    assert "evil.example\\r\\nFAKE LOG LINE" in line and "\\u001b[31m" in line and "\\u2028" in line


@pytest.mark.parametrize("source", ["{{ message | json }}", "{{ message | string }}", "{{ message.items() | list }}",
                                    "{{ message.smarthost.password }}{{ message.dkim[0].key }}{{ message.mime }}",
                                    "{{ message | redact | json }}", "{% for k, v in message.items() %}{{ v }}{% endfor %}"])
def test_no_format_sees_a_secret_whether_it_names_the_field_or_dumps_the_message(source):
    (record,) = all_records(ROOT / "tests" / "samples" / "secrets-and-mime.json")
    line = render(source, record)
    assert "[redacted]" in line
    assert not any(secret in line for secret in SECRETS), line


def test_a_redacted_message_keeps_the_shape_and_the_other_fields():
    (record,) = all_records(ROOT / "tests" / "samples" / "secrets-and-mime.json")
    dumped = json.loads(render("{{ message | json }}", record))
    assert dumped["smarthost"] == {"hostname": "relay.example.com", "port": 587,
                                   "username": "relay-user", "password": "[redacted]"}
    assert dumped["dkim"][0]["key"] == "[redacted]" and dumped["dkim"][0]["selector"]
    assert dumped["recipient"] == record["message"]["recipient"]


def test_redact_copies_what_it_changes():
    message = decode((ROOT / "tests" / "samples" / "secrets-and-mime.json").read_bytes())
    assert redact(message)["smarthost"]["password"] == "[redacted]"
    assert message["smarthost"]["password"] == "s3cr3t-relay-password", "redact must copy"


def test_filters_quote_and_convert():
    assert logfmt("plain") == "plain" and logfmt('a "b" c') == '"a \\"b\\" c"' and logfmt(None) == ""
    assert logfmt("a=b") == '"a=b"' and logfmt(True) == "true"
    assert to_json("x\ny") == '"x\\ny"' and to_json(None) == "null"
    assert iso8601("2016-02-04 13:45:15") == "2016-02-04T13:45:15Z" and iso8601("junk") == ""
    assert epoch("1970-01-02 00:00:01") == 86401
    assert redact({"data": "x", "keep": 1}) == {"data": "[redacted]", "keep": 1}


def test_the_csv_filter_quotes_commas_quotes_and_line_breaks():
    template = "{{ a | csv }},{{ b | csv }},{{ c | csv }}"
    line = render(template, {"a": "x,y", "b": 'say "hi"', "c": None})
    assert next(csv.reader([line])) == ["x,y", 'say "hi"', ""]


def test_a_template_that_raises_gives_a_render_error_naming_the_format(tmp_path):
    (tmp_path / "bad.j2").write_text("{{ attempt.code / 0 }}")
    fmt = FormatSet.load(tmp_path)["bad"]
    (record,) = all_records(ROOT / "tests" / "samples" / "dns-failure.json")
    with pytest.raises(RenderError, match="format 'bad': ZeroDivisionError"):
        fmt.render(record)


def test_a_syntax_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.j2"
    path.write_text("line one\n{{ attempt.code }\n")
    with pytest.raises(FormatError) as caught:
        compile_format(path)
    assert caught.value.line == 2 and str(path) in str(caught.value)


def test_a_broken_file_keeps_its_previous_good_version(tmp_path):
    path = tmp_path / "f.j2"
    path.write_text("good {{ record.queue }}")
    first = FormatSet.load(tmp_path)
    path.write_text("bad {{ record.queue ")
    second = FormatSet.load(tmp_path, previous=first)
    assert second["f"] is first["f"] and "f" in second.errors


@pytest.mark.parametrize("source", [
    "{{ message.__class__ }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ message.update({'a': 1}) }}",
    "{{ attempt.pop('code') }}",
    "{{ extracted.to.append('x') }}",
    "{{ record.get.__globals__ }}",
])
def test_the_sandbox_refuses_escapes_and_mutation(source):
    (record,) = all_records(ROOT / "tests" / "samples" / "results-queue-after-retry.json")[:1]
    before = json.dumps(record["message"], sort_keys=True)
    try:
        out = render(source, record)
    except SecurityError:
        pass
    else:
        assert out == "", "an unsafe attribute must read as undefined"
    assert json.dumps(record["message"], sort_keys=True) == before


@pytest.mark.parametrize(("text", "own"), [
    ('{{ attempt.code }} {{ record.outcome }} {{ message.recipient }} {{ extracted.subject }}', True),
    ('{% set n = attempt.code %}{{ n }}', True),
    ('{% for i in range(2) %}{{ i }}{% endfor %} {{ attempt.code }}', False),   # a global
    ('{{ attempt.code }} {{ nosuchname }}', False),                                # undefined: as before
    ('{% for a in attempt.items() %}{{ loop.index }}{{ a }}{% endfor %}', False),  # loop: the merged way
    ('{{ range }}{% set range = 1 %}{{ range }}', False),                          # a global's name, set late
    ('{% set ns = namespace(n=1) %}{% set ns.n = 2 %}{{ ns.n }}', False),
    ('{% macro m(x) %}{{ x }}{% endmacro %}{{ m(record.outcome) }}', True),
])
def test_a_format_that_reads_only_the_records_names_renders_the_same_without_the_globals(tmp_path, text, own):
    (tmp_path / "f.j2").write_text(text)
    fmt = FormatSet.load(tmp_path)["f"]
    assert fmt.own_names is own
    (record, _) = all_records(ROOT / "tests" / "samples" / "results-queue-after-retry.json")
    first = fmt.render(record)
    assert first == fmt.render(dict(record)) == ENV.from_string(text).render(**record)
    assert "nosuchname" not in text or first.endswith(" ")
