"""Step 2: entries together and with what is already provisioned (a Catalog)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from smsgate.domain.config_errors import ConfigError
from smsgate.domain.provisioning import parse_document
from smsgate.domain.provisioning_checks import (
    Catalog,
    check_references,
    parse_config,
    resolve_short_numbers,
)

SAMPLE = Path(__file__).parents[2] / "data" / "design_sample.toml"


def sample() -> dict[str, Any]:
    return tomllib.loads(SAMPLE.read_text())


def problems(data: dict[str, Any], catalog: Catalog | None = None) -> list[str]:
    document = parse_document(data, source="f.toml")
    with pytest.raises(ConfigError) as caught:
        check_references(document, catalog, source="f.toml")
    return caught.value.lines()


def access_service(
    service_id: int, keyword: str, numbers: list[str], merchant: int = 1
) -> dict[str, Any]:
    return {
        "id": service_id,
        "merchant": merchant,
        "type": "access_code",
        "keyword": keyword,
        "short_numbers": numbers,
    }


def test_short_number_needs_its_operator() -> None:
    data = sample()
    data["short_numbers"][0]["operator"] = "sim-ro"
    assert (
        "f.toml: short_numbers[0] (number=1851): operator: no operator with id 'sim-ro'"
        in problems(data)
    )
    # ... which may already be provisioned.
    check_references(parse_document(data), Catalog(operators=frozenset({"sim-ro"})))


def test_service_needs_its_merchant_and_short_numbers() -> None:
    data = sample()
    data["services"][0]["merchant"] = 7
    data["services"][0]["short_numbers"] = ["1851", "1999", "1851@sim-ro"]
    assert problems(data) == [
        "f.toml: services[0] (id=102): merchant: no merchant with id 7",
        "f.toml: services[0] (id=102): short_numbers: no short number '1999'",
        "f.toml: services[0] (id=102): short_numbers: no short number '1851@sim-ro'",
    ]


def test_a_document_may_lean_on_the_catalog() -> None:
    data = {"services": [access_service(300, "NEW", ["1851"])]}
    catalog = Catalog(
        operators=frozenset({"sim-bg"}),
        short_numbers={("sim-bg", "1851"): "BGN"},
        merchants={1: ("shop", "BGN")},
    )
    check_references(parse_document(data), catalog)
    assert len(problems(data)) == 2  # without it: no merchant 1, no short number 1851


def test_keyword_is_unique_per_short_number() -> None:
    data = sample()
    data["services"].append(access_service(103, "kod", ["1851"]))
    assert problems(data) == [
        "f.toml: services[2] (id=103): keyword: 'kod' on 1851 is already used by "
        "services[0] (id=102)"
    ]


def test_keywords_compare_as_routing_matches_them() -> None:
    data = sample()
    data["services"].append(access_service(103, "ＫＯＤ", ["1851"]))  # full-width letters
    assert len(problems(data)) == 1


def test_the_empty_keyword_is_one_catch_all_per_number() -> None:
    data = sample()
    data["services"][0]["keyword"] = ""
    data["services"].append(access_service(103, "", ["1851"]))
    assert problems(data) == [
        "f.toml: services[2] (id=103): keyword: the empty keyword (catch-all) on 1851 is "
        "already used by services[0] (id=102)"
    ]
    data["services"][2]["keyword"] = "OTHER"
    parse_config(data)


def test_same_number_on_two_operators_is_one_keyword_space() -> None:
    data = sample()
    data["operators"].append(
        {"id": "sim-bg2", "country": "BG", "kind": "http", "ip_allowlist": ["10.0.0.1"]}
    )
    data["short_numbers"].append(
        {"number": "1851", "operator": "sim-bg2", "price": "2.40", "currency": "BGN"}
    )
    data["services"].append(access_service(103, "KOD", ["1851@sim-bg2"]))
    assert problems(data) == [
        "f.toml: services[2] (id=103): keyword: 'KOD' on 1851 is already used by "
        "services[0] (id=102)"
    ]


def test_keyword_conflict_with_a_provisioned_service() -> None:
    data = sample()
    catalog = Catalog(services={900: ("KOD", frozenset({("sim-bg", "1851")}))})
    assert problems(data, catalog) == [
        "f.toml: services[0] (id=102): keyword: 'KOD' on 1851 is already used by service 900"
    ]
    # The document's own entry replaces the provisioned one of the same id.
    catalog = Catalog(services={102: ("KOD", frozenset({("sim-bg", "1851")}))})
    check_references(parse_document(data), catalog)


def test_short_numbers_must_be_in_the_merchant_currency() -> None:
    data = sample()
    data["short_numbers"][0]["currency"] = "EUR"
    data["short_numbers"][0]["price"] = "1.23"
    assert problems(data) == [
        "f.toml: services[0] (id=102): short_numbers: 1851@sim-bg is priced in EUR, the "
        "merchant's currency is BGN"
    ]


def test_service_amounts_follow_the_merchant_currency() -> None:
    data = sample()
    data["merchants"][0]["currency"] = "JPY"
    data["merchants"][0]["credit"] = "50"
    data["short_numbers"][0]["currency"] = "JPY"
    data["short_numbers"][0]["price"] = "240"
    assert problems(data) == [
        "f.toml: services[1] (id=201): price_per_part: '0.05' has 2 decimals; JPY has 0"
    ]


def test_duplicates() -> None:
    data = sample()
    data["operators"].append(dict(data["operators"][0]))
    data["short_numbers"].append(dict(data["short_numbers"][0]))
    data["merchants"].append(dict(data["merchants"][0]))
    data["services"].append(dict(data["services"][1]))
    lines = problems(data)
    assert (
        "f.toml: operators[1] (id=sim-bg): id: duplicate id 'sim-bg' "
        "(also operators[0] (id=sim-bg))" in lines
    )
    assert (
        "f.toml: short_numbers[1] (number=1851): number: duplicate number 1851@sim-bg "
        "(also short_numbers[0] (number=1851))"
    ) in lines
    assert (
        "f.toml: merchants[1] (id=1): login: duplicate login 'shop' (also merchants[0] (id=1))"
        in lines
    )
    assert (
        "f.toml: merchants[1] (id=1): api_key: duplicate api_key (not shown) "
        "(also merchants[0] (id=1))" in lines
    )
    assert "f.toml: services[2] (id=201): id: duplicate id 201 (also services[1] (id=201))" in lines
    assert not any("k-123" in line for line in lines)


def test_login_taken_by_a_provisioned_merchant() -> None:
    data = sample()
    assert problems(data, Catalog(merchants={9: ("shop", "BGN")})) == [
        "f.toml: merchants[0] (id=1): login: 'shop' is taken by merchant 9"
    ]


def test_resolve_short_numbers() -> None:
    known = [("a", "1851"), ("b", "1851"), ("a", "1852")]
    assert resolve_short_numbers(["1851"], known) == ({("a", "1851"), ("b", "1851")}, [])
    assert resolve_short_numbers(["1851@b", "1852@b"], known) == ({("b", "1851")}, ["1852@b"])
