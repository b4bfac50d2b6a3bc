from hypothesis import given
from hypothesis import strategies as st

from smsgate.domain.delivery import (
    aggregate,
    is_final,
    state_from_message_state,
    state_from_receipt_word,
)

PART_STATES = [
    "queued",
    "submitted",
    "accepted",
    "enroute",
    "delivered",
    "undelivered",
    "expired",
    "rejected",
    "failed",
    "unknown",
]


def test_receipt_words_map_to_states() -> None:
    assert state_from_receipt_word("DELIVRD") == "delivered"
    assert state_from_receipt_word(" undeliv ") == "undelivered"
    assert state_from_receipt_word("EXPIRED") == "expired"
    assert state_from_receipt_word("REJECTD") == "rejected"
    assert state_from_receipt_word("ACCEPTD") == "accepted"
    assert state_from_receipt_word("garbage") == "unknown"


def test_message_state_tlv_values() -> None:
    assert state_from_message_state(2) == "delivered"
    assert state_from_message_state(5) == "undelivered"
    assert state_from_message_state(99) == "unknown"


def test_a_message_is_delivered_only_when_every_part_is() -> None:
    assert aggregate(["delivered", "delivered"]) == "delivered"
    assert aggregate(["delivered", "submitted"]) == "submitted"
    assert aggregate(["delivered", "undelivered"]) == "undelivered"
    assert aggregate([]) == "queued"


@given(st.lists(st.sampled_from(PART_STATES), min_size=1, max_size=8))
def test_aggregate_is_delivered_iff_all_parts_delivered(states: list[str]) -> None:
    whole = aggregate(states)
    assert (whole == "delivered") == all(s == "delivered" for s in states)
    if any(is_final(s) and s != "delivered" for s in states):
        assert is_final(whole) and whole != "delivered"
