"""Handsets: bounded inboxes, balances and charges that are safe to retry."""

from __future__ import annotations

from datetime import UTC, datetime

from smsgate.simulator.handsets import Handsets, InboxMessage, handset_key

AT = datetime(2026, 1, 1, tzinfo=UTC)


def message(text: str) -> InboxMessage:
    return InboxMessage(
        sender="SHOP",
        at=AT,
        operator="op",
        message_ids=(text,),
        parts=1,
        data_coding=0,
        payload=text.encode(),
    )


def test_numbers_are_spelled_one_way() -> None:
    assert handset_key(" +359888123456 ") == "359888123456"
    handsets = Handsets()
    handsets.receive("+359888123456", message("a"))
    assert [m.text for m in handsets.inbox("359888123456")] == ["a"]


def test_an_inbox_keeps_the_newest_within_its_limit() -> None:
    handsets = Handsets(inbox_limit=3)
    for text in "abcde":
        handsets.receive("1", message(text))
    assert [m.text for m in handsets.inbox("1")] == ["c", "d", "e"]


def test_no_inbox_at_all_for_benchmarks() -> None:
    handsets = Handsets(inbox_limit=0)
    handsets.receive("1", message("a"))
    assert handsets.inbox("1") == [] and len(handsets) == 0


def test_an_unknown_number_has_an_empty_inbox() -> None:
    assert Handsets().inbox("999") == []


def test_json_of_an_inbox_message() -> None:
    assert message("hi").to_json() == {
        "text": "hi",
        "from": "SHOP",
        "at": "2026-01-01T00:00:00+00:00",
        "operator": "op",
        "message_id": "hi",
        "message_ids": ["hi"],
        "parts": 1,
        "data_coding": 0,
    }


def charge(handsets: Handsets, amount: int, reference: str, currency: str = "BGN") -> object:
    result, repeat = handsets.charge(
        operator="op",
        msisdn="1",
        amount_minor=amount,
        currency=currency,
        reference=reference,
        at=AT,
    )
    return result.status, result.balance_minor, repeat


def test_charges_take_from_the_balance_until_it_is_short() -> None:
    handsets = Handsets()
    handsets.set_balance("1", 500, "BGN")
    assert charge(handsets, 240, "r1") == ("ok", 260, False)
    assert charge(handsets, 240, "r2") == ("ok", 20, False)
    assert charge(handsets, 240, "r3") == ("insufficient_funds", 20, False)
    assert handsets.can_pay("1", 20, "BGN") == "ok"
    assert handsets.can_pay("1", 21, "BGN") == "insufficient_funds"


def test_a_repeated_reference_takes_nothing_more() -> None:
    handsets = Handsets()
    handsets.set_balance("1", 500, "BGN")
    assert charge(handsets, 300, "same") == ("ok", 200, False)
    assert charge(handsets, 300, "same") == ("ok", 200, True)
    assert handsets.get("1").balance_minor == 200


def test_a_balance_is_in_one_currency() -> None:
    handsets = Handsets()
    handsets.set_balance("1", 500, "bgn")
    assert charge(handsets, 100, "r", currency="EUR") == ("currency_mismatch", 500, False)
    assert handsets.can_pay("1", 1, "EUR") == "currency_mismatch"


def test_without_a_balance_every_charge_passes_unless_a_default_is_set() -> None:
    assert charge(Handsets(), 10**9, "r") == ("ok", None, False)
    limited = Handsets(default_balance_minor=100)
    assert limited.can_pay("2", 101, "BGN") == "insufficient_funds"
    assert charge(limited, 100, "r") == ("ok", 0, False)
