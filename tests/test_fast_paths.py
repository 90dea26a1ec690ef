"""The hot path's shortcuts: the sandbox's dict fast path and Format.render's direct dispatch."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from jinja2 import ChainableUndefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from logship.errors import RenderError
from logship.render.filters import CONTROL, FILTERS, to_json
from logship.render.formats import ENV, Format, FormatSet, _finalize, compile_format, one_line
from logship.render.record import Source, decode, records

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(p for p in (ROOT / "tests" / "samples").glob("*.json") if p.name != "not-a-result.json")

# The same sandbox without the fast path: what every lookup must keep answering.
REFERENCE = ImmutableSandboxedEnvironment(autoescape=False, undefined=ChainableUndefined,
                                          finalize=_finalize, keep_trailing_newline=False)
REFERENCE.filters.update(FILTERS)

# Plain keys, missing keys, keys that shadow dict methods, private and dunder names, chains.
LOOKUPS = [
    "message.recipient", "message.nope", "message.nope.deeper", "attempt.code", "attempt['from']",
    "attempt.cipher.name", "message._private", "message.items", "message.keys", "message.get",
    "message.values", "message.copy", "message.update", "message.pop", "message.clear",
    "message.setdefault", "message.popitem", "message.fromkeys", "message.__class__",
    "message.__dict__", "message.__init__", "message.__getitem__", "message.mro",
    "message.__class__.__mro__", "message.tags.append", "message.tags.0", "message.tags.length",
    "extracted.headers['Message-ID']", "extracted.headers.get('MESSAGE-ID')", "extracted.headers.__class__",
    "message.get('recipient')", "message.keys() | list | length", "message.items() | list | length",
    "message['items']", "message['nope']", "message['nope'].deeper", "message['__class__']", "message['keys']",
    "message['get']", "attempt['cipher']['name']", "message.tags[0]", "message['tags'][1]",
]


def sample_records() -> list[dict]:
    """Every record of every sample, as read from the results queue."""
    return [r for path in SAMPLES for r in records(decode(path.read_bytes()), Source("results"), 0.0)]


def hostile_record() -> dict:
    """A record whose message has keys named like dict methods and dunders, as JSON allows."""
    message = json.loads(json.dumps({
        "recipient": "a@b.example", "items": "an item", "keys": [1, 2], "__class__": "sneaky",
        "_private": "underscore", "mro": "not a method", "update": {"x": 1}, "tags": ["t1", "t2"],
        "results": [{"state": "message", "result": "accepted", "from": "192.0.2.1"}]}))
    return records(message, Source("results"), 0.0)[0]


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_every_lookup_answers_as_the_sandbox_without_the_fast_path(lookup):
    source = "{{ " + lookup + " }}"
    for record in [*sample_records(), hostile_record()]:
        expected = _outcome(REFERENCE, source, record)
        assert _outcome(ENV, source, record) == expected, f"{lookup} on {record['message'].get('recipient')}"


def _outcome(env: ImmutableSandboxedEnvironment, source: str, record: dict) -> str:
    """What a template prints (object addresses blanked), or the type of the error it raises."""
    try:
        return re.sub(r"0x[0-9a-f]+", "0x…", env.from_string(source).render(copy.deepcopy(record)))
    except Exception as error:
        return f"raised {type(error).__name__}"


@pytest.mark.parametrize("source", [
    "{{ message.__class__.__mro__ }}",
    "{{ message.__class__.mro() }}",
    "{{ message.items.__globals__ }}",
    "{{ message.get.__self__.__class__ }}",
    "{{ message.update({'recipient': 'x'}) }}",
    "{{ message.setdefault('new', 1) }}",
    "{{ message.pop('recipient') }}",
    "{{ message.popitem() }}",
    "{{ message.clear() }}",
    "{{ message.tags.append('x') }}",
    "{{ message.tags.pop() }}",
    "{{ attempt.update(code=1) }}",
    "{{ record.__init__({}) }}",
    "{{ message.__setitem__('recipient', 'x') }}",
])
def test_the_fast_path_still_refuses_escapes_and_mutation(source):
    record = hostile_record()
    before = json.dumps(record["message"], sort_keys=True)
    try:
        out = ENV.from_string(source).render(record)
    except SecurityError:
        out = ""
    assert out in ("", "None"), f"{source} printed {out!r}"
    assert json.dumps(record["message"], sort_keys=True) == before


def test_a_key_named_like_a_dict_method_reads_as_the_method_as_before():
    record = hostile_record()
    assert ENV.from_string("{{ message['items'] }}").render(record) == "an item"
    assert ENV.from_string("{{ message.items is callable }}").render(record) == "true"
    assert ENV.from_string("{{ message.mro }}").render(record) == "not a method"


@pytest.mark.parametrize("name", ["mailerq", "json", "logfmt", "accounting"])
def test_direct_dispatch_renders_what_template_render_does(name):
    fmt = FormatSet.load(ROOT / "formats")[name]
    for record in sample_records():
        assert fmt.render(record) == one_line(fmt.template.render(record))


def test_globals_work_and_set_does_not_leak_from_one_record_to_the_next(tmp_path):
    path = tmp_path / "f.j2"
    path.write_text("{% if attempt.code %}{% set seen = attempt.code %}{% endif %}"
                    "{{ seen }}|{{ range(2) | list | length }}|{% set ns = namespace(n=1) %}{{ ns.n }}")
    fmt = compile_format(path)
    with_code, without_code = hostile_record(), hostile_record()
    with_code["attempt"]["code"] = 250
    assert fmt.render(with_code) == "250|2|1"
    assert fmt.render(without_code) == "|2|1"


def test_an_error_inside_a_template_is_a_render_error_naming_the_format(tmp_path):
    path = tmp_path / "broken.j2"
    path.write_text("{{ attempt.code / 0 }}")
    fmt: Format = compile_format(path)
    record = hostile_record()
    record["attempt"]["code"] = 250
    with pytest.raises(RenderError) as caught:
        fmt.render(record)
    assert "broken" in str(caught.value) and "ZeroDivisionError" in str(caught.value)


@pytest.mark.parametrize("text", ["a\u2028b", "x\x85y", "tab\there", "del\x7f", "nbsp\u00a0ok", "plain", "é—ü"])
def test_one_line_escapes_exactly_what_the_control_pattern_matches(text):
    from logship.render.filters import CONTROL, _escape
    assert one_line(text) == CONTROL.sub(_escape, text)
    assert "\n" not in one_line(text + "\n") and "\r" not in one_line("\r" + text)


class _Loud(dict):
    """A dict subclass with an attribute of its own: not a plain dict, so no fast path."""

    volume = "attribute"


def test_a_dict_subclass_takes_the_checked_path_and_keeps_its_attributes():
    record = {"message": _Loud(volume="key")}
    assert ENV.from_string("{{ message.volume }}|{{ message['volume'] }}").render(record) == "attribute|key"


def test_names_set_at_the_top_level_are_gone_for_the_next_record(tmp_path):
    (tmp_path / "s.j2").write_text("{% if record.first %}{% set seen = 'yes' %}{% endif %}[{{ seen }}]")
    fmt = FormatSet.load(tmp_path)["s"]
    assert fmt.render({"record": {"first": True}}) == "[yes]"
    assert fmt.render({"record": {"first": False}}) == "[]"


@pytest.mark.parametrize("text", [
    "plain", "é—ü n°1", "a\u2028b", "x\x85y", "del\x7f", "tab\there", "\u200b\u200f\u202e\u2066\u2069",
    "\u2014" * 40 + "\u2028", "\u00b0" * 40 + "\x9f", "\u2029\u2027\u202f\u2065\u206a\u00a0\u00ad",
    "€‰\u2030\u20ac", "\U0001f600 \u0080",
])
def test_the_json_filter_escapes_exactly_what_one_line_would(text):
    for value in (text, {"k": text, "n": [text, 1, None]}):
        assert to_json(value) == one_line(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        assert not CONTROL.search(to_json(value))


@pytest.mark.parametrize("source, escaped", [
    ("{{ {'a': attempt.code, 'b': message.recipient} | json }}", True),
    ("x={{ attempt.code | json }} y={{ message.recipient | tojson }}", True),
    ("{% if attempt.code %}{{ attempt.code | json }}{% endif %}", True),
    ("{{ attempt.code }}", False),
    ("a\tb {{ attempt.code | json }}", False),
    ("{{ attempt.code | json | replace('1', '\\n') }}", False),
    ("{% filter replace('1', '\\n') %}{{ attempt.code | json }}{% endfilter %}", False),
    ("{% for x in message.tags %}{{ x | json }}{% endfor %}", False),
])
def test_only_a_format_whose_every_piece_is_escaped_skips_one_line(tmp_path, source, escaped):
    path = tmp_path / "f.j2"
    path.write_text(source)
    fmt = compile_format(path)
    assert fmt.escaped is escaped
    record = hostile_record()
    record["attempt"]["code"] = "1\u2028\x85"
    record["message"]["recipient"] = "\u202e\x7f@b.example"
    assert fmt.render(record) == one_line(fmt.template.render(record))
    assert not CONTROL.search(fmt.render(record))
