"""Messages through the simulated SMSC: what an MT part carries, joining long MTs for the
handset's inbox, and the deliver_sm PDUs it sends (MOs, delivery receipts).
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from smsgate.domain.concat import (
    ESM_UDHI,
    TAG_SAR_MSG_REF_NUM,
    TAG_SAR_SEGMENT_SEQNUM,
    TAG_SAR_TOTAL_SEGMENTS,
    ConcatInfo,
    Reassembler,
    concat_from_sar,
    parse_udh,
    with_udh,
)
from smsgate.domain.errors import MalformedUdh
from smsgate.domain.text import Concat, segment
from smsgate.simulator.handsets import Handsets, InboxMessage, decode_text
from smsgate.simulator.receipts import TEXT_SAMPLE, DlrSettings, receipt_text
from smsgate.smpp.constants import EsmClass, NetworkErrorType, Npi, Ton
from smsgate.smpp.pdu import DeliverSm, Tlvs

PARTIAL_MAX_AGE = timedelta(minutes=10)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs microseconds per message
class MtPart:
    """One received MT (a submit_sm, a data_sm or one destination of a submit_multi)."""

    operator: str
    source: str
    destination: str
    esm_class: int
    data_coding: int
    body: bytes  # short_message, or message_payload when short_message is empty
    sar: ConcatInfo | None
    message_id: str


def body_of(short_message: bytes, tlvs: Tlvs) -> bytes:
    """SMPP 3.4 §5.3.2.32: message_payload replaces short_message (which is then empty)."""
    if not short_message and tlvs.message_payload is not None:
        return tlvs.message_payload
    return short_message


def sar_of(tlvs: Tlvs) -> ConcatInfo | None:
    if tlvs.sar_msg_ref_num is None:
        return None
    raw = {
        TAG_SAR_MSG_REF_NUM: (tlvs.sar_msg_ref_num or 0).to_bytes(2, "big"),
        TAG_SAR_TOTAL_SEGMENTS: bytes([(tlvs.sar_total_segments or 0) & 0xFF]),
        TAG_SAR_SEGMENT_SEQNUM: bytes([(tlvs.sar_segment_seqnum or 0) & 0xFF]),
    }
    return concat_from_sar(raw)


class Mailroom:
    """Puts received MTs in the handsets' inboxes, joining the parts of long ones.

    A single-part message costs one decode and one append; only parts go through the
    :class:`Reassembler`.
    """

    def __init__(self, handsets: Handsets) -> None:
        self.handsets = handsets
        self._reassembler = Reassembler()
        self._part_ids: dict[tuple[str, int], list[str]] = {}
        self.partials_expired = 0

    @property
    def pending_partials(self) -> int:
        return len(self._reassembler)

    def deliver(self, part: MtPart, now: datetime) -> InboxMessage | None:
        """File the part; return the inbox message when it is whole (None while parts miss)."""
        if not self.handsets.inbox_limit:
            return None
        info = part.sar
        payload = part.body
        if part.esm_class & ESM_UDHI:
            try:
                header, payload = parse_udh(part.body)
            except MalformedUdh:
                header = None
            if header is not None and info is None:
                info = header.concat
        if info is None or info.total == 1:
            message = InboxMessage(
                sender=part.source,
                at=now,
                operator=part.operator,
                message_ids=(part.message_id,),
                parts=1,
                data_coding=part.data_coding,
                payload=payload,
            )
            self.handsets.receive(part.destination, message)
            return message
        return self._deliver_part(part, info, payload, now)

    def _deliver_part(
        self, part: MtPart, info: ConcatInfo, payload: bytes, now: datetime
    ) -> InboxMessage | None:
        source = f"{part.operator}/{part.source}/{part.destination}"
        ids = self._part_ids.setdefault((source, info.ref), [])
        ids.append(part.message_id)
        whole = self._reassembler.add(source, info, payload, part.data_coding, now)
        if whole is None:
            return None
        del self._part_ids[(source, info.ref)]
        message = InboxMessage(
            decoded=whole.text,
            sender=part.source,
            at=now,
            operator=part.operator,
            message_ids=tuple(ids),
            parts=whole.parts,
            data_coding=whole.data_coding,
        )
        self.handsets.receive(part.destination, message)
        return message

    def expire(self, now: datetime) -> int:
        """Forget long messages whose missing parts never came; how many were dropped."""
        expired = self._reassembler.expire(now, PARTIAL_MAX_AGE)
        for partial in expired:
            self._part_ids.pop((partial.source, partial.ref), None)
        self.partials_expired += len(expired)
        return len(expired)


# Octets that read the same in GSM 03.38 and ASCII: space ! " # % to ? A-Z a-z.
_SAME_IN_GSM_AND_ASCII: Final = bytes(
    [*range(0x20, 0x24), *range(0x25, 0x40), *range(0x41, 0x5B), *range(0x61, 0x7B)]
)


def sample_text(part: MtPart) -> str:
    """The text a receipt quotes: the start of the part's own text, without its header."""
    payload = part.body
    if part.esm_class & ESM_UDHI:
        with contextlib.suppress(MalformedUdh):
            _, payload = parse_udh(payload)
    sample = payload[:TEXT_SAMPLE]
    if part.data_coding in (0, 1) and not sample.translate(None, _SAME_IN_GSM_AND_ASCII):
        return sample.decode("ascii")  # the common case, without a table lookup per char
    return decode_text(payload[: TEXT_SAMPLE * 2], part.data_coding)[:TEXT_SAMPLE]


def make_tlvs(**present: Any) -> Tlvs:
    """A Tlvs holding ``present``; the rest keep their class defaults (absent).

    The frozen 45-argument ``__init__`` costs ~20 µs, too much once per receipt at
    thousands a second; the codec builds decoded Tlvs the same way.
    """
    if _TLVS_SLOTTED:
        return Tlvs(**present)
    tlvs = object.__new__(Tlvs)
    tlvs.__dict__.update(present)
    return tlvs


_TLVS_SLOTTED: Final = "__slots__" in vars(Tlvs)


def receipt_pdu(
    *,
    part: MtPart,
    receipt_id: str,
    submitted_at: datetime,
    done_at: datetime,
    settings: DlrSettings,
) -> DeliverSm:
    """The deliver_sm that reports on ``part`` (SMPP 3.4 §4.6.1, Appendix B).

    It goes from the handset back to the sender; the outcome is in the text and in the
    receipted_message_id, message_state (and network_error_code) TLVs.
    """
    text = receipt_text(
        message_id=receipt_id,
        submitted_at=submitted_at,
        done_at=done_at,
        settings=settings,
        text=sample_text(part),
    )
    error = None
    if settings.error_code:
        error = bytes([NetworkErrorType.GSM]) + settings.error_code.to_bytes(2, "big")
    return DeliverSm(
        source_addr_ton=Ton.INTERNATIONAL,
        source_addr_npi=Npi.ISDN,
        source_addr=part.destination,
        dest_addr_ton=Ton.UNKNOWN,
        dest_addr_npi=Npi.UNKNOWN,
        destination_addr=part.source,
        esm_class=EsmClass.TYPE_DELIVERY_RECEIPT,
        short_message=text.encode("ascii"),
        tlvs=make_tlvs(
            receipted_message_id=receipt_id,
            message_state=int(settings.message_state),
            network_error_code=error,
        ),
    )


class MoBuilder:
    """Builds the deliver_sm parts of an MO: GSM-7 when it fits, else UCS-2; long texts in
    parts tied by an 8-bit UDH reference (3GPP TS 23.040 §9.2.3.24.1)."""

    def __init__(self) -> None:
        self._refs = itertools.count(1)

    def parts(self, *, msisdn: str, short_number: str, text: str) -> list[DeliverSm]:
        segmentation = segment(text, concat=Concat.UDH8)
        ref = next(self._refs) % 256
        bodies = with_udh(segmentation, ref)
        esm_class = ESM_UDHI if len(bodies) > 1 else 0
        return [
            DeliverSm(
                source_addr_ton=Ton.INTERNATIONAL,
                source_addr_npi=Npi.ISDN,
                source_addr=msisdn,
                dest_addr_ton=Ton.UNKNOWN,
                dest_addr_npi=Npi.ISDN,
                destination_addr=short_number,
                esm_class=esm_class,
                data_coding=segmentation.data_coding,
                short_message=body,
            )
            for body in bodies
        ]


def smpp_time(when: datetime) -> str:
    """SMPP 3.4 §7.1.1 absolute time, UTC: YYMMDDhhmmss, tenths, quarter hours, '+'."""
    return f"{when:%y%m%d%H%M%S}{when.microsecond // 100_000}00+"
