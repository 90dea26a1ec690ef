"""Attempt counters on their own: status classes, sending IPs and their cap, the lag, counting once."""
from __future__ import annotations

import calendar
import logging
import random
import time

import pytest

from logship.config.providers import OTHER, PROVIDERS
from logship import stats
from logship.render.deliverability import NONE, AttemptLabels, _observe_each, attempt_epoch, observe_lags, status_class
from logship.stats import LAG_BUCKETS, Attempts, Durations


@pytest.mark.parametrize(("status", "label"), [
    ("4.7.28", "4.7"), ("5.1.1", "5.1"), ("2.0.0", "2.0"), (" 4.2.2 ", "4.2"), ("5.7.123", "5.7"),
    (None, NONE), ("", NONE), (421, NONE), ("9.1.1", NONE), ("4.8.1", NONE), ("4.77.1", NONE),
    ("4.7", NONE), ("5.1.1 user unknown", NONE), ("5.1.1234", NONE), (["5.1.1"], NONE), ("４.7.1", NONE),
])
def test_the_status_label_is_class_and_subject_or_none_so_garbage_makes_no_label(status, label):
    assert status_class(status) == label


def test_mailerqs_utc_attempt_time_reads_as_unix_time_and_anything_else_as_none():
    assert attempt_epoch("2026-12-02 13:00:05") == calendar.timegm((2026, 12, 2, 13, 0, 5))
    for bad in ("2026-12-02T13:00:05", "2026-13-02 13:00:05", "2026-12-02 24:00:00", "", None, 5, "x" * 19):
        assert attempt_epoch(bad) is None, bad


def counters() -> Attempts:
    """The counters as a daemon with metrics on has them: the shipped table, 256 sending IPs."""
    return Attempts(AttemptLabels(PROVIDERS, 256))


def test_without_labels_nothing_is_noted_or_counted():
    attempts = Attempts()  # metrics off, or a replay: nobody reads the counts
    attempts.note([record()])
    attempts.written(time.time())
    assert not attempts.pending and not attempts.by_provider and sum(attempts.lag.counts) == 0


def record(outcome: str = "delivered", domain: str = "gmail.com", **attempt: object) -> dict:
    """A record as records() makes it, with only what the counters read."""
    return {"attempt": attempt, "record": {"outcome": outcome, "recipient_domain": domain}}


def stamp(epoch: float) -> str:
    """An attempt time in MailerQ's form."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def test_noted_attempts_count_only_once_written_and_each_only_once():
    attempts = counters()
    now = 1_800_000_000.0
    attempts.note([record("deferred", "gmail.com", **{"from": "192.0.2.1", "status": "4.7.28",
                                                       "time": stamp(now - 30)}),
                   record("bounced", "tail.example", status="5.1.1", time=stamp(now - 400))])
    assert not attempts.by_provider and sum(attempts.lag.counts) == 0  # taken, not yet written
    attempts.written(now)
    attempts.written(now + 5)  # a second flush with nothing new counts nothing again
    assert attempts.by_provider == {("deferred", "google"): 1, ("bounced", OTHER): 1}
    assert attempts.by_source == {("deferred", "192.0.2.1"): 1, ("bounced", NONE): 1}
    assert attempts.by_status == {("deferred", "4.7"): 1, ("bounced", "5.1"): 1}
    assert sum(attempts.lag.counts) == 2 and attempts.lag.sum == 430
    assert dict(attempts.lag.cumulative())["30.0"] == 1 and dict(attempts.lag.cumulative())["600.0"] == 2


def test_an_attempt_stamped_ahead_of_our_clock_counts_as_no_lag_and_one_without_a_time_not_at_all():
    attempts = counters()
    attempts.note([record(time=stamp(2_000_000_100)), record(time="soon"), record()])
    attempts.written(2_000_000_000.0)
    assert sum(attempts.by_provider.values()) == 3
    assert attempts.lag.counts[0] == 1 and sum(attempts.lag.counts) == 1 and attempts.lag.sum == 0


def test_sending_ips_past_the_cap_are_other_with_one_warning(caplog):
    attempts = Attempts(AttemptLabels(PROVIDERS, 3))
    attempts.note([record(**{"from": f"198.51.100.{i}"}) for i in range(10)])
    attempts.note([record(**{"from": "2001:0db8::1"}), record(**{"from": "2001:db8:0::1"})])
    with caplog.at_level(logging.WARNING, logger="logship"):
        attempts.written(time.time())
    labels = {source for _outcome, source in attempts.by_source}
    assert len(labels - {OTHER}) == 3 and attempts.by_source[("delivered", OTHER)] == 9
    assert [r.message for r in caplog.records].count(
        'metrics.max_sources reached: further sending IPs are counted as source_ip="other"') == 1


def test_one_address_written_two_ways_is_one_label():
    attempts = counters()
    attempts.note([record(**{"from": "2001:0db8::1"}), record(**{"from": "2001:db8:0::1"})])
    attempts.written(time.time())
    assert attempts.by_source == {("delivered", "2001:db8::1"): 2}


def test_fields_a_hostile_body_made_tables_or_lists_count_as_absent_rather_than_crash():
    attempts = counters()
    attempts.note([record(**{"from": ["192.0.2.1"], "status": {"x": 1}, "time": ["2026-12-02 13:00:05"]}),
                   record(**{"from": "not an ip", "status": True, "time": 17})])
    attempts.written(time.time())
    assert attempts.by_source == {("delivered", NONE): 2} and attempts.by_status == {("delivered", NONE): 2}
    assert sum(attempts.lag.counts) == 0


def test_the_lag_buckets_reach_from_a_second_to_a_day():
    assert LAG_BUCKETS[0] == 1 and LAG_BUCKETS[-1] == 86400 and 300 in LAG_BUCKETS
    assert list(LAG_BUCKETS) == sorted(LAG_BUCKETS)


def test_a_batch_of_well_formed_times_gets_the_same_lag_histogram_as_one_by_one():
    rng = random.Random(3)
    now = 1_800_000_000.25
    for size in (1, 7, 360):
        stamps = tuple(stamp(now - rng.choice([0, 0.5, 1, 2, 30, 86_400, 90_000]) - rng.randint(-5, 4000))
                       for _ in range(size))
        fast, each = Durations(LAG_BUCKETS), Durations(LAG_BUCKETS)
        observe_lags(fast, stamps, now)
        _observe_each(each, stamps, now)
        assert fast.counts == each.counts and sum(fast.counts) == size
        assert fast.sum == pytest.approx(each.sum, abs=1e-3)


@pytest.mark.parametrize("odd", [None, 17, "soon", "2026-13-02 13:00:05", "2026-12-02 13:00:5", ["2026-12-02 13:00:05"],
                                 ("2026-12-02 13",), "2026-12-02 13:00:05 ", "2026-12-02 24:00:00"])
def test_one_value_that_is_no_time_leaves_the_rest_of_its_batch_counted(odd):
    now = 1_800_000_000.0
    attempts = counters()
    attempts.note([record(time=stamp(now - 40)), record(time=odd), record(time=stamp(now - 3))])
    attempts.written(now)
    assert sum(attempts.lag.counts) == 2 and attempts.lag.sum == 43
    assert sum(attempts.by_provider.values()) == 3


def test_counts_summed_into_the_families_past_the_fold_are_the_same(monkeypatch):
    monkeypatch.setattr(stats, "FOLD_AT", 5)
    folding, whole = counters(), Attempts(AttemptLabels(PROVIDERS, 256))
    batches = [[record(outcome, domain, **{"from": f"192.0.2.{i % 9}", "status": f"4.{i % 8}.1"})
                for i, (outcome, domain) in enumerate([("deferred", "gmail.com"), ("bounced", "yahoo.com"),
                                                       ("delivered", f"x{n}.example")] * 4)] for n in range(6)]
    for batch in batches:
        folding.note(batch)
        folding.written(time.time())
    assert len(folding.combined) <= 5 + 12 and any(folding._folded)  # summed along the way
    monkeypatch.setattr(stats, "FOLD_AT", 10_000)
    for batch in batches:
        whole.note(batch)
        whole.written(time.time())
    assert not any(whole._folded)
    assert folding.families() == whole.families() and sum(folding.by_source.values()) == 72
