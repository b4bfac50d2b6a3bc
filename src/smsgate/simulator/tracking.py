"""The messages the simulated SMSC accepted, kept (boundedly) so query_sm, cancel_sm and
replace_sm can be answered, as SMPP 3.4 §4.8-4.10 describe."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from smsgate.smpp.constants import MessageState


@dataclass(slots=True)
class Tracked:
    """One accepted message (one part: every submit_sm has its own id)."""

    message_id: str  # as answered in submit_sm_resp
    operator: str
    source: str
    destination: str
    submitted_at: datetime
    final_at: datetime  # when the outcome is reached (and the receipt is due)
    outcome: MessageState
    error_code: int = 0
    cancelled: bool = False
    text: str | None = None  # set by replace_sm

    def state_at(self, now: datetime) -> MessageState:
        if self.cancelled:
            return MessageState.DELETED
        if now < self.final_at:
            return MessageState.ENROUTE
        return self.outcome

    def is_final_at(self, now: datetime) -> bool:
        return self.cancelled or now >= self.final_at


class Tracker:
    """Accepted messages by (operator, message id); the oldest are forgotten past ``limit``."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._messages: dict[tuple[str, str], Tracked] = {}

    def __len__(self) -> int:
        return len(self._messages)

    def add(self, tracked: Tracked) -> None:
        messages = self._messages
        messages[(tracked.operator, tracked.message_id)] = tracked
        if len(messages) > self.limit:
            # dicts keep insertion order: the first key is the oldest message
            del messages[next(iter(messages))]

    def get(self, operator: str, message_id: str) -> Tracked | None:
        return self._messages.get((operator, message_id))
