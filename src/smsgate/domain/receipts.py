"""Delivery receipts as SMSCs send them over SMPP: the text of SMPP 3.4 Appendix B, the
receipted_message_id / message_state TLVs (§5.3.2.12, §5.3.2.35), and the message ids in
decimal or hexadecimal.

The receipt text is a de-facto standard (Appendix B calls it an example) written on one line::

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
    stat:DDDDDDD err:E text:...

SMSCs vary: keys in upper case, fields missing or in another order, dates with seconds,
``text:`` absent or holding anything (even ``stat:``-like words). The parser reads the known
keys up to ``text:`` and keeps the rest of the line as the text.

Ids: an SMSC may answer submit_sm with the id in one base and write receipts in another
(Kannel's ``msg-id-type``). The operator setting ``dlr_id_format`` names the base of the
receipts' ids when it differs: ``"hex"`` (receipts in hexadecimal, submit_sm_resp in decimal)
or ``"dec"`` (receipts in decimal, submit_sm_resp in hexadecimal). With the setting, both sides
are reduced to the same canonical form, the number in decimal without leading zeros; without
it, ids are compared exactly as received (SMPP 3.4 says they are opaque C-Octet strings).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from smsgate.domain.delivery import state_from_message_state, state_from_receipt_word

__all__ = [
    "IdFormat",
    "Receipt",
    "ReceiptText",
    "canonical_receipt_id",
    "canonical_submit_id",
    "parse_receipt_date",
    "parse_receipt_text",
    "receipt_from",
]

IdFormat = Literal["hex", "dec"]

# Keys of Appendix B before "text:", lower-cased, with their field names.
_KEYS: Final = {
    "id": "id",
    "sub": "sub",
    "dlvrd": "dlvrd",
    "submit date": "submit_date",
    "submitdate": "submit_date",
    "submit_date": "submit_date",
    "done date": "done_date",
    "donedate": "done_date",
    "done_date": "done_date",
    "stat": "stat",
    "err": "err",
}
_FIELD = re.compile(
    r"(?i)(?:^|\s)(id|sub|dlvrd|submit[ _]?date|done[ _]?date|stat|err|text)\s*:\s*"
)
_SPACES: Final = re.compile(r"\s+")
_HEX_ID: Final = re.compile(r"[0-9A-Fa-f]+")
_DEC_ID: Final = re.compile(r"[0-9]+")
# Ids longer than this are not numbers anybody generates: keep them as strings.
_MAX_ID_DIGITS: Final = 40


@dataclass(frozen=True, slots=True)
class ReceiptText:
    """The fields of an Appendix B receipt text, as strings exactly as the SMSC wrote them."""

    id: str
    stat: str
    err: str = ""
    sub: str = ""
    dlvrd: str = ""
    submit_date: str = ""
    done_date: str = ""
    text: str = ""


def parse_receipt_text(text: str) -> ReceiptText | None:
    """The receipt fields of ``text``; None when it has no ``id:`` or no ``stat:``.

    Values run to the next known key; everything after ``text:`` is the text sample.
    """
    marks = list(_FIELD.finditer(text))
    values: dict[str, str] = {}
    for index, mark in enumerate(marks):
        key = mark.group(1).lower()
        if key not in _KEYS and key != "text":
            key = _SPACES.sub(" ", key)
        if key == "text":
            values["text"] = text[mark.end() :]
            break
        end = marks[index + 1].start() if index + 1 < len(marks) else len(text)
        field = _KEYS.get(key) or _KEYS.get(key.replace(" ", ""))
        if field is not None and field not in values:
            values[field] = text[mark.end() : end].strip()
    message_id = values.get("id", "")
    stat = values.get("stat", "")
    if not message_id or not stat:
        return None
    return ReceiptText(
        id=message_id,
        stat=stat,
        err=values.get("err", ""),
        sub=values.get("sub", ""),
        dlvrd=values.get("dlvrd", ""),
        submit_date=values.get("submit_date", ""),
        done_date=values.get("done_date", ""),
        text=values.get("text", ""),
    )


@functools.lru_cache(maxsize=256)
def parse_receipt_date(value: str) -> datetime | None:
    """``YYMMDDhhmm`` or ``YYMMDDhhmmss`` (Appendix B; the SMSC's local time, taken as UTC).

    Cached: a busy link's receipts carry the same few minutes, and strptime is slow."""
    value = value.strip()
    for pattern in ("%y%m%d%H%M%S", "%y%m%d%H%M"):
        if len(value) == _DATE_LENGTHS[pattern]:
            try:
                return datetime.strptime(value, pattern).replace(tzinfo=UTC)
            except ValueError:
                return None
    return None


_DATE_LENGTHS: Final = {"%y%m%d%H%M%S": 12, "%y%m%d%H%M": 10}


def _as_number(value: str, base: int) -> str | None:
    pattern = _HEX_ID if base == 16 else _DEC_ID
    if not value or len(value) > _MAX_ID_DIGITS or not pattern.fullmatch(value):
        return None
    return str(int(value, base))


def canonical_submit_id(message_id: str, dlr_id_format: IdFormat | None) -> str:
    """The form in which a submit_sm_resp's message_id is stored and matched."""
    message_id = message_id.strip()
    if dlr_id_format is None:
        return message_id
    # The submit_sm_resp is in the other base than the receipts.
    base = 10 if dlr_id_format == "hex" else 16
    return _as_number(message_id, base) or message_id


def canonical_receipt_id(receipt_id: str, dlr_id_format: IdFormat | None) -> str:
    """The form in which a receipt's id is matched against ``canonical_submit_id``.

    Like Kannel, an id that is not all digits is read as hexadecimal whatever the setting.
    """
    receipt_id = receipt_id.strip()
    if dlr_id_format is None:
        return receipt_id
    base = 16 if dlr_id_format == "hex" or not _DEC_ID.fullmatch(receipt_id) else 10
    return _as_number(receipt_id, base) or receipt_id


@dataclass(frozen=True, slots=True)
class Receipt:
    """A receipt reduced to what matching needs, in our state vocabulary (domain/delivery)."""

    message_id: str  # canonical: compare with canonical_submit_id
    state: str
    error_code: str
    raw_id: str
    stat: str  # the word or number the SMSC sent, for the record
    done_at: datetime | None = None


def receipt_from(
    *,
    text: str,
    receipted_message_id: str | None,
    message_state: int | None,
    network_error_code: bytes | None = None,
    dlr_id_format: IdFormat | None = None,
) -> Receipt | None:
    """A receipt from a deliver_sm's decoded text and TLVs; None when neither names an id.

    The TLVs win where both are present: they are typed, while the text is free-form
    (SMPP 3.4 §5.3.2.12 and §5.3.2.35 define them for exactly this use).
    """
    parsed = parse_receipt_text(text)
    raw_id = (receipted_message_id or "").strip() or (parsed.id if parsed else "")
    if not raw_id:
        return None
    if message_state is not None:
        state = state_from_message_state(message_state)
        stat = str(message_state)
    elif parsed is not None:
        state = state_from_receipt_word(parsed.stat)
        stat = parsed.stat
    else:
        return None
    error_code = parsed.err if parsed is not None else ""
    if network_error_code is not None and len(network_error_code) == 3:
        # §5.3.2.31: network type, then a 2-octet error code.
        code = int.from_bytes(network_error_code[1:], "big")
        if not error_code or error_code.strip("0") == "":
            error_code = f"{network_error_code[0]}:{code}"
    if error_code.strip("0") == "":
        error_code = ""  # "err:000" means no error
    return Receipt(
        message_id=canonical_receipt_id(raw_id, dlr_id_format),
        state=state,
        error_code=error_code[:32],
        raw_id=raw_id,
        stat=stat,
        done_at=parse_receipt_date(parsed.done_date) if parsed is not None else None,
    )
