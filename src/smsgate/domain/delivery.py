"""Delivery states of an MT: the operator's receipt words mapped to ours, and a whole message's
state from its parts' states."""

from __future__ import annotations

from collections.abc import Iterable

# SMPP 3.4 Appendix B: the `stat:` words of a text receipt, and §5.2.28 message_state values.
_RECEIPT_WORDS = {
    "DELIVRD": "delivered",
    "EXPIRED": "expired",
    "DELETED": "undelivered",
    "UNDELIV": "undelivered",
    "ACCEPTD": "accepted",
    "UNKNOWN": "unknown",
    "REJECTD": "rejected",
    "ENROUTE": "enroute",
}
_MESSAGE_STATES = {
    1: "enroute",
    2: "delivered",
    3: "expired",
    4: "undelivered",  # DELETED
    5: "undelivered",
    6: "accepted",
    7: "unknown",
    8: "rejected",
}

FINAL_STATES = frozenset({"delivered", "expired", "undelivered", "rejected", "failed"})
# States a part or message passes through before its outcome is known.
PENDING_STATES = frozenset({"queued", "submitting", "submitted", "accepted", "enroute"})


def state_from_receipt_word(word: str) -> str:
    return _RECEIPT_WORDS.get(word.strip().upper(), "unknown")


def state_from_message_state(value: int) -> str:
    return _MESSAGE_STATES.get(value, "unknown")


def is_final(state: str) -> bool:
    return state in FINAL_STATES


def aggregate(part_states: Iterable[str]) -> str:
    """The state of a multipart message.

    A message is delivered only when every part is; the first failed outcome among the parts
    names the whole; while any part is pending the message is as far as its slowest part.
    """
    states = list(part_states)
    if not states:
        return "queued"
    for failure in ("rejected", "failed", "undelivered", "expired"):
        if failure in states:
            return failure
    if all(state == "delivered" for state in states):
        return "delivered"
    if "unknown" in states:
        return "unknown"
    order = ["queued", "submitting", "submitted", "accepted", "enroute", "delivered"]
    return min(states, key=lambda state: order.index(state) if state in order else 0)
