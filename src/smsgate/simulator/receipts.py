"""Delivery receipts as the simulated SMSC writes them: the settings that choose the outcome,
message ids in decimal or hexadecimal, and the receipt text of SMPP 3.4 Appendix B.

The text is the de-facto format every SMSC sends and every gateway parses::

    id:<id> sub:001 dlvrd:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DELIVRD
    err:000 text:<the first 20 characters>

(on one line).

The same outcome also travels as TLVs (receipted_message_id, message_state), SMPP 3.4 §5.3.2.12
and §5.3.2.35, so a gateway can rely on either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from smsgate.smpp.constants import MessageState

IdFormat = Literal["hex", "dec"]

# SMPP 3.4 Appendix B, table B-2: the final states and their `stat:` words.
RECEIPT_STATES: Final[dict[str, MessageState]] = {
    "DELIVRD": MessageState.DELIVERED,
    "EXPIRED": MessageState.EXPIRED,
    "DELETED": MessageState.DELETED,
    "UNDELIV": MessageState.UNDELIVERABLE,
    "ACCEPTD": MessageState.ACCEPTED,
    "UNKNOWN": MessageState.UNKNOWN,
    "REJECTD": MessageState.REJECTED,
    "ENROUTE": MessageState.ENROUTE,
}
TEXT_SAMPLE: Final = 20  # Appendix B: the first 20 characters of the original message


@dataclass(frozen=True, slots=True)
class DlrSettings:
    """When and how the simulated SMSC reports on an accepted message.

    ``before_resp``: write the receipt on the wire before the submit_sm_resp, as SMSCs that
    deliver instantly do (DESIGN.md 2.2); the delay is then ignored.
    ``error_code``: the ``err:`` value, a network error code (0-999).
    """

    delay_ms: int = 0
    outcome: str = "DELIVRD"
    error_code: int = 0
    before_resp: bool = False

    def __post_init__(self) -> None:
        if self.outcome not in RECEIPT_STATES:
            words = ", ".join(RECEIPT_STATES)
            raise ValueError(f"outcome {self.outcome!r} is not one of {words}")
        if not 0 <= self.delay_ms <= 3_600_000:
            raise ValueError("delay_ms must be between 0 and 3600000")
        if not 0 <= self.error_code <= 999:
            raise ValueError("error_code must be between 0 and 999")

    @property
    def delivered(self) -> bool:
        return self.outcome == "DELIVRD"

    @property
    def message_state(self) -> MessageState:
        return RECEIPT_STATES[self.outcome]

    def wanted(self, registered_delivery: int) -> bool:
        """Whether the submitter asked for this receipt (SMPP 3.4 §5.2.17, bits 1-0)."""
        receipt = registered_delivery & 0x03
        if receipt == 1:
            return True
        # 2: a receipt on failure only; 3 is reserved and treated like 0.
        return receipt == 2 and not self.delivered


def format_message_id(number: int, id_format: IdFormat) -> str:
    """A message id as the SMSC writes it: decimal, or lower-case hexadecimal."""
    return format(number, "x") if id_format == "hex" else str(number)


def ids_for(number: int, dlr_id_format: IdFormat | None) -> tuple[str, str]:
    """(submit_sm_resp message_id, receipt id) of message ``number``.

    ``dlr_id_format`` is the operator's setting, in the sense of Kannel's msg-id-type: the base
    the receipt writes ids in, when it differs from the base of submit_sm_resp. So "dec" means
    a hexadecimal message_id with decimal receipts, "hex" a decimal message_id with hexadecimal
    receipts, and absent the same decimal id in both.
    """
    if dlr_id_format == "dec":
        return format_message_id(number, "hex"), format_message_id(number, "dec")
    if dlr_id_format == "hex":
        return format_message_id(number, "dec"), format_message_id(number, "hex")
    same = format_message_id(number, "dec")
    return same, same


def receipt_text(
    *,
    message_id: str,
    submitted_at: datetime,
    done_at: datetime,
    settings: DlrSettings,
    text: str,
) -> str:
    """The Appendix B receipt text; non-ASCII characters of the sample become ``?``."""
    dlvrd = "001" if settings.delivered else "000"
    sample = text[:TEXT_SAMPLE]
    if not sample.isascii():
        sample = sample.encode("ascii", "replace").decode("ascii")
    return (
        f"id:{message_id} sub:001 dlvrd:{dlvrd}"
        f" submit date:{receipt_date(submitted_at)} done date:{receipt_date(done_at)}"
        f" stat:{settings.outcome} err:{settings.error_code:03d} text:{sample}"
    )


_dates: dict[float, str] = {}


def receipt_date(when: datetime) -> str:
    """YYMMDDhhmm (Appendix B), remembered per minute: strftime is slow at receipt rates."""
    minute = when.timestamp() // 60
    text = _dates.get(minute)
    if text is None:
        if len(_dates) > 1024:
            _dates.clear()
        text = _dates[minute] = f"{when:%y%m%d%H%M}"
    return text
