"""Step 2 of validating a provisioning document: its entries together, and with what the
database already holds (a :class:`Catalog`).

- a short number's operator exists; a service's merchant and short numbers exist;
- ids, logins and API keys are unique; (operator, number) is unique;
- on each short number (whatever the operator), one service per keyword, compared as
  domain/routing.py matches them; the empty keyword is the number's catch-all and counts;
- a service's short numbers are priced in its merchant's currency, and its amount keys have
  no more decimals than that currency.

An entry of the document replaces the catalog's entry with the same id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from smsgate.domain.config_errors import ConfigError, ConfigIssue, entry_label
from smsgate.domain.errors import InvalidKeyword
from smsgate.domain.provisioning import (
    ProvisioningDocument,
    ServiceEntry,
    amount_issues,
    parse_document,
)
from smsgate.domain.routing import normalize_keyword


@dataclass(frozen=True)
class Catalog:
    """What is already provisioned, as far as references and uniqueness need to know."""

    operators: frozenset[str] = frozenset()
    # (operator id, number) -> currency of its tariff
    short_numbers: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # merchant id -> (login, currency)
    merchants: Mapping[int, tuple[str, str]] = field(default_factory=dict)
    # service id -> (keyword, {(operator id, number)} it listens on)
    services: Mapping[int, tuple[str, frozenset[tuple[str, str]]]] = field(default_factory=dict)


def resolve_short_numbers(
    refs: Iterable[str], known: Iterable[tuple[str, str]]
) -> tuple[set[tuple[str, str]], list[str]]:
    """The (operator, number) pairs that refs name, and the refs that name nothing.

    ``"1851"`` names that number on every operator that has it; ``"1851@sim-bg"`` one.
    """
    by_number: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for operator, number in known:
        by_number[number].add((operator, number))
    found: set[tuple[str, str]] = set()
    missing: list[str] = []
    for ref in refs:
        number, _, operator = ref.partition("@")
        pairs = {p for p in by_number.get(number, set()) if not operator or p[0] == operator}
        if pairs:
            found |= pairs
        else:
            missing.append(ref)
    return found, missing


def check_references(
    document: ProvisioningDocument, catalog: Catalog | None = None, *, source: str = "<config>"
) -> None:
    """Raise :class:`ConfigError` unless every reference resolves and every key is unique.

    An entry of the document replaces the catalog's entry with the same id.
    """
    issues = list(_reference_issues(document, catalog or Catalog()))
    if issues:
        raise ConfigError(source, issues)


def parse_config(data: Any, *, source: str = "<config>") -> ProvisioningDocument:
    """:func:`parse_document` and :func:`check_references` for a self-contained document."""
    document = parse_document(data, source=source)
    check_references(document, source=source)
    return document


def _duplicates(
    key: str, values: list[Any], labels: list[str], shown: list[str] | None = None
) -> Iterable[ConfigIssue]:
    seen: dict[Any, str] = {}
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        if value is None:
            continue
        if value in seen:
            what = shown[i] if shown is not None else repr(value)
            yield ConfigIssue(label, key, f"duplicate {key} {what} (also {seen[value]})")
        else:
            seen[value] = label


def _reference_issues(document: ProvisioningDocument, catalog: Catalog) -> Iterable[ConfigIssue]:
    op_labels = [
        entry_label("operators", i, {"id": o.id}) for i, o in enumerate(document.operators)
    ]
    sn_labels = [
        entry_label("short_numbers", i, {"number": s.number})
        for i, s in enumerate(document.short_numbers)
    ]
    m_labels = [entry_label("merchants", i, {"id": m.id}) for i, m in enumerate(document.merchants)]
    s_labels = [entry_label("services", i, {"id": s.id}) for i, s in enumerate(document.services)]

    yield from _duplicates("id", [o.id for o in document.operators], op_labels)
    numbers = [(s.operator, s.number) for s in document.short_numbers]
    yield from _duplicates("number", numbers, sn_labels, [f"{n}@{o}" for o, n in numbers])
    yield from _duplicates("id", [m.id for m in document.merchants], m_labels)
    yield from _duplicates("login", [m.login for m in document.merchants], m_labels)
    api_keys = [m.api_key for m in document.merchants]
    yield from _duplicates("api_key", api_keys, m_labels, ["(not shown)"] * len(api_keys))
    yield from _duplicates("id", [s.id for s in document.services], s_labels)

    operators = set(catalog.operators) | {o.id for o in document.operators}
    short_numbers = dict(catalog.short_numbers)
    for label, sn in zip(sn_labels, document.short_numbers, strict=True):
        if sn.operator not in operators:
            yield ConfigIssue(label, "operator", f"no operator with id {sn.operator!r}")
        short_numbers[(sn.operator, sn.number)] = sn.currency

    merchants = dict(catalog.merchants)
    in_document = {m.id for m in document.merchants}
    for label, m in zip(m_labels, document.merchants, strict=True):
        merchants[m.id] = (m.login, m.currency)
        for other_id, (login, _currency) in catalog.merchants.items():
            if login == m.login and other_id != m.id and other_id not in in_document:
                yield ConfigIssue(label, "login", f"{login!r} is taken by merchant {other_id}")

    # number -> normalised keyword -> who has it. A keyword is unique on a number across all
    # operators: routing (domain/routing.py) knows an MO's number, and the same short
    # number on several operators is one product for the subscriber.
    routes: dict[str, dict[str, str]] = defaultdict(dict)
    listed = {s.id for s in document.services}
    for service_id, (keyword, pairs) in catalog.services.items():
        if service_id not in listed:
            for _operator, number in pairs:
                routes[number][_normal(keyword)] = f"service {service_id}"
    for label, service in zip(s_labels, document.services, strict=True):
        yield from _service_issues(label, service, merchants, short_numbers, routes)

    r_labels = [
        entry_label("routes", i, {"country": r.country or "*"})
        for i, r in enumerate(document.routes)
    ]
    destinations = [(r.destination or "*", r.operator) for r in document.routes]
    yield from _duplicates(
        "operator", destinations, r_labels, [f"{o} for {c}" for c, o in destinations]
    )
    for label, route in zip(r_labels, document.routes, strict=True):
        if route.operator not in operators:
            yield ConfigIssue(label, "operator", f"no operator with id {route.operator!r}")


def _normal(keyword: str) -> str:
    try:
        return normalize_keyword(keyword)
    except InvalidKeyword:
        return keyword  # refused by step 1 for document entries; kept as is from the catalog


def _service_issues(
    label: str,
    service: ServiceEntry,
    merchants: Mapping[int, tuple[str, str]],
    short_numbers: Mapping[tuple[str, str], str],
    routes: dict[str, dict[str, str]],
) -> Iterable[ConfigIssue]:
    merchant = merchants.get(service.merchant)
    if merchant is None:
        yield ConfigIssue(label, "merchant", f"no merchant with id {service.merchant}")
    pairs, missing = resolve_short_numbers(service.short_numbers, short_numbers)
    for ref in missing:
        yield ConfigIssue(label, "short_numbers", f"no short number {ref!r}")
    for pair in sorted(pairs):
        if merchant is not None and short_numbers[pair] != merchant[1]:
            yield ConfigIssue(
                label,
                "short_numbers",
                f"{pair[1]}@{pair[0]} is priced in {short_numbers[pair]}, "
                f"the merchant's currency is {merchant[1]}",
            )
    keyword = _normal(service.keyword)
    for number in sorted({number for _operator, number in pairs}):
        taken_by = routes[number].get(keyword)
        if taken_by is not None and taken_by != label:
            shown = repr(service.keyword) if service.keyword else "the empty keyword (catch-all)"
            yield ConfigIssue(
                label, "keyword", f"{shown} on {number} is already used by {taken_by}"
            )
        else:
            routes[number][keyword] = label
    if merchant is not None:
        for key in service.settings_model.amount_keys:
            yield from amount_issues(label, key, getattr(service, key), merchant[1])
