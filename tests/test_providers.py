"""Grouping recipient domains into mailbox providers: the shipped table, its patterns, its bounds."""
from __future__ import annotations

import pytest

from logship.config.providers import OTHER, PROVIDERS, check_providers, merged
from logship.render.deliverability import CACHE_SIZE, Labelled, Providers


@pytest.mark.parametrize(("domain", "provider"), [
    ("gmail.com", "google"), ("googlemail.com", "google"),
    ("outlook.com", "microsoft"), ("hotmail.com", "microsoft"), ("hotmail.co.uk", "microsoft"),
    ("hotmail.fr", "microsoft"), ("live.com.au", "microsoft"), ("msn.com", "microsoft"),
    ("yahoo.com", "yahoo"), ("yahoo.co.uk", "yahoo"), ("aol.com", "yahoo"),
    ("icloud.com", "apple"), ("me.com", "apple"), ("gmx.de", "gmx"), ("web.de", "gmx"),
    ("mail.ru", "mailru"), ("yandex.ru", "yandex"), ("orange.fr", "orange"), ("wanadoo.fr", "orange"),
])
def test_the_shipped_table_groups_the_large_providers_domains(domain, provider):
    assert Providers(PROVIDERS).of(domain) == provider


@pytest.mark.parametrize("domain", [
    "example.com", "notgmail.com", "mx.gmail.com", "gmail.com.evil.example", "live.nationevents.com",
    "hotmail", "com", "", "a.b.c.d.e.hotmail.com",
])
def test_a_domain_no_pattern_claims_is_other_including_lookalikes(domain):
    assert Providers(PROVIDERS).of(domain) == OTHER


def test_a_star_suffix_claims_every_subdomain_but_not_the_domain_itself():
    providers = Providers({"acme": ("*.acme.example",)})
    assert providers.of("eu.acme.example") == providers.of("a.b.acme.example") == "acme"
    assert providers.of("acme.example") == OTHER


def test_an_exact_domain_wins_over_a_suffix_and_the_longest_suffix_wins():
    providers = Providers({"outer": ("*.example.com",), "inner": ("*.mail.example.com",),
                           "exact": ("x.mail.example.com",)})
    assert providers.of("x.mail.example.com") == "exact"
    assert providers.of("y.mail.example.com") == "inner"
    assert providers.of("y.example.com") == "outer"


def test_the_config_table_adds_replaces_and_with_an_empty_list_drops_providers():
    table = merged({"acme": ("acme.example",), "google": ("gmail.com",), "orange": ()})
    assert table["acme"] == ("acme.example",) and table["google"] == ("gmail.com",)
    assert "orange" not in table and table["yahoo"] == PROVIDERS["yahoo"]
    assert merged({"acme": ("acme.example",)}, shipped=False) == {"acme": ("acme.example",)}
    assert Providers(table).of("googlemail.com") == OTHER


@pytest.mark.parametrize(("table", "problem"), [
    ({"Google": ("gmail.com",)}, "providers.Google: a provider name"),
    ({"other": ("x.example",)}, "providers.other: a provider name"),
    ({"acme": ("acme.example", "*acme.example")}, "providers.acme[1]: '*acme.example' is not a domain"),
    ({"acme": ("ACME.example",)}, "providers.acme[0]: 'ACME.example' is not a domain"),
    ({"acme": ("example",)}, "providers.acme[0]: 'example' is not a domain"),
    ({"a": ("x.example",), "b": ("x.example",)}, "providers.b[0]: 'x.example' is also claimed by 'a'"),
])
def test_a_bad_provider_name_or_pattern_is_refused_naming_its_key(table, problem):
    with pytest.raises(ValueError) as refused:
        check_providers(table)
    assert str(refused.value).startswith(problem)


def test_the_shipped_table_passes_its_own_check():
    check_providers(PROVIDERS)


def test_a_long_tail_of_domains_never_grows_the_label_cache_past_its_size():
    labelled = Labelled(Providers(PROVIDERS).of)
    for start in range(0, CACHE_SIZE + 500, 1000):
        batch = [f"d{i}.example" for i in range(start, start + 1000)]
        assert list(labelled(batch)) == [OTHER] * 1000
        assert len(labelled.cache) <= CACHE_SIZE
    assert list(labelled(["gmail.com", "d1.example", "gmail.com"])) == ["google", OTHER, "google"]
