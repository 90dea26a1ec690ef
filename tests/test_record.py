"""Records: one per new attempt, derived fields, the outcome table, bad bodies."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from logship.errors import MessageError
from logship.render.record import Headers, Source, decode, outcome, records, utc_iso_millis

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> dict:
    """A sample message, decoded the way the daemon decodes it."""
    return decode((SAMPLES / name).read_bytes())


def test_every_attempt_of_a_final_message_is_a_record_with_its_number():
    recs = records(sample("results-queue-after-retry.json"), Source("results", "all", True), 0.0)
    assert [r["record"]["attempt_number"] for r in recs] == [1, 2]
    assert [r["attempt"]["state"] for r in recs] == ["intro", "message"]
    assert [r["record"]["final"] for r in recs] == [False, True]
    assert all(r["record"]["attempts"] == 2 for r in recs)


def test_only_the_newest_attempt_is_new_on_the_retry_queue():
    message = sample("results-queue-after-retry.json")
    (rec,) = records(message, Source("retry", "latest", False), 0.0)
    assert rec["record"]["attempt_number"] == 2
    assert rec["record"]["final"] is False


def test_derived_fields_describe_where_and_when_the_record_came_from():
    (rec,) = records(sample("accepted-tls.json"), Source("results", "all", True, "rk", True), 86400.5)
    derived = rec["record"]
    assert derived["queue"] == "results" and derived["routing_key"] == "rk" and derived["redelivered"] is True
    assert derived["received"] == "1970-01-02T00:00:00.500Z"
    assert derived["recipient_domain"] == "gmail.com"
    assert derived["envelope_domain"] == "my-domain.com"


def test_custom_properties_and_extracted_fields_reach_the_record():
    (rec, _) = records(sample("results-queue-after-retry.json"), Source("results"), 0.0)
    assert rec["message"]["my-id"] == "order-1234"
    assert rec["extracted"]["subject"] == "Test Subject"
    assert rec["extracted"]["to"] == ["info@example.org", "other@example.org"]


def test_header_lookups_ignore_case():
    (rec,) = records(sample("hostile-fields.json"), Source("results"), 0.0)
    headers = rec["extracted"]["headers"]
    assert headers["x-mixed-case"] == headers["X-MIXED-CASE"] == headers.get("X-Mixed-Case") == "kept"
    assert "X-Weird" in headers


def test_a_message_without_extracted_gets_empty_headers():
    (rec,) = records(sample("dns-failure.json"), Source("results"), 0.0)
    assert rec["extracted"]["headers"] == Headers({})
    assert rec["record"]["message_id"] == ""


@pytest.mark.parametrize("name, final, expected", [
    ("accepted-tls.json", True, ["delivered"]),
    ("dns-failure.json", True, ["bounced"]),
    ("expired.json", True, ["deferred", "expired"]),
    ("process-invalid.json", True, ["failed"]),
    ("retry-queue-first-attempt.json", False, ["deferred"]),
    ("results-queue-after-retry.json", True, ["deferred", "delivered"]),
    ("response-pattern-overrides.json", False, ["deferred"]),
    ("hostile-fields.json", True, ["bounced"]),
])
def test_outcomes_of_the_samples_follow_the_table(name, final, expected):
    recs = records(sample(name), Source("q", "all", final), 0.0)
    assert [r["record"]["outcome"] for r in recs] == expected


@pytest.mark.parametrize("attempt, final, expected", [
    ({"state": "message", "result": "accepted", "code": 250}, True, "delivered"),
    ({"state": "process", "result": "timeout"}, True, "expired"),
    ({"state": "process", "result": "error"}, False, "failed"),
    ({"state": "storage", "result": "error"}, True, "failed"),
    ({"state": "bind", "result": "error"}, False, "failed"),
    ({"state": "rcptto", "result": "error", "code": 550}, False, "bounced"),
    ({"state": "rcptto", "result": "error", "code": 421}, False, "deferred"),
    ({"state": "rcptto", "result": "error", "code": 421}, True, "failed"),
    ({"state": "rcptto", "result": "error", "status": "5.1.1"}, False, "bounced"),
    ({"state": "connect", "result": "timeout"}, False, "deferred"),
    ({"state": "rcptto", "result": "error", "code": 421, "fatal": True}, False, "bounced"),
    ({"state": "rcptto", "result": "error", "code": 550, "fatal": False}, False, "deferred"),
])
def test_outcome_table(attempt, final, expected):
    assert outcome(attempt, final) == expected


def test_gzip_bodies_are_decoded():
    body = (SAMPLES / "accepted-tls.json").read_bytes()
    assert decode(gzip.compress(body), "gzip") == json.loads(body)


@pytest.mark.parametrize("body, encoding, reason", [
    ((SAMPLES / "not-json.txt").read_bytes(), None, "not JSON"),
    ((SAMPLES / "not-a-result.json").read_bytes(), None, "not a result message"),
    (b"[1, 2]", None, "not a result message"),
    (b'{"results": [1]}', None, r"results\[0\] is not an object"),
    (b'{"results": []}', None, "not a result message"),
    (b"plain bytes", "gzip", "does not decompress"),
])
def test_bodies_that_are_not_result_messages_raise_message_error(body, encoding, reason):
    with pytest.raises(MessageError, match=reason):
        decode(body, encoding)


def test_received_stamps_are_right_across_milliseconds_and_seconds_despite_the_cache():
    # the cache holds the last milliseconds: a repeat, the next one and a new second must all be exact
    times = [86400.0005, 86400.0009, 86400.001, 86400.999, 86401.0, 86400.0005]
    assert [utc_iso_millis(t) for t in times] == [
        "1970-01-02T00:00:00.000Z", "1970-01-02T00:00:00.000Z", "1970-01-02T00:00:00.001Z",
        "1970-01-02T00:00:00.999Z", "1970-01-02T00:00:01.000Z", "1970-01-02T00:00:00.000Z"]
