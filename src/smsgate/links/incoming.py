"""Reading what an SMSC delivers (pure: no I/O): is a deliver_sm a receipt or an MO, which
part of a concatenated MO is it, what does it say, and what identifies it.

SMPP 3.4 gives an MO no message id: deliver_sm (§4.6.1) has none, and a redelivery after a lost
deliver_sm_resp is byte for byte the same PDU under a new sequence number. So the link keeps a
*fingerprint* of each MO (a hash of every field the SMSC copies from the handset's message)
and uses it, with the acknowledgement tracking of ``mo_store.py``, to recognise redeliveries.
When an SMSC does name its MOs (``receipted_message_id`` on a deliver_sm that is not a
receipt, as some vendors send), that id is used instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from smsgate.domain.concat import ConcatInfo, split_short_message
from smsgate.domain.errors import InvalidConcat, MalformedUdh
from smsgate.domain.receipts import IdFormat, Receipt, receipt_from
from smsgate.domain.text import DC_UCS2, Alphabet, decode
from smsgate.smpp import DataSm, DeliverSm, EsmClass

__all__ = [
    "IncomingMoPart",
    "fingerprint",
    "is_receipt",
    "read_mo",
    "read_receipt",
]

Delivered = DeliverSm | DataSm

# SMPP 3.4 §5.2.12, esm_class bits 5-2 of a deliver_sm: these types report on an MT.
_RECEIPT_TYPES = frozenset(
    {
        EsmClass.TYPE_DELIVERY_RECEIPT,
        EsmClass.TYPE_DELIVERY_ACK,
        EsmClass.TYPE_MANUAL_ACK,
        EsmClass.TYPE_INTERMEDIATE_NOTIFICATION,
    }
)


def is_receipt(pdu: Delivered) -> bool:
    return (pdu.esm_class & EsmClass.TYPE_MASK) in _RECEIPT_TYPES


def _body(pdu: Delivered) -> bytes:
    if isinstance(pdu, DataSm):
        return pdu.tlvs.message_payload or b""
    # §5.2.21 / §5.3.2.32: a message is in short_message or in message_payload, not both.
    return pdu.short_message or pdu.tlvs.message_payload or b""


def read_receipt(pdu: Delivered, dlr_id_format: IdFormat | None) -> Receipt | None:
    data_coding = pdu.data_coding
    body = _body(pdu)
    text = body.decode("utf-16-be", "replace") if data_coding == DC_UCS2 else body.decode("latin-1")
    return receipt_from(
        text=text,
        receipted_message_id=pdu.tlvs.receipted_message_id,
        message_state=pdu.tlvs.message_state,
        network_error_code=pdu.tlvs.network_error_code,
        dlr_id_format=dlr_id_format,
    )


@dataclass(frozen=True, slots=True)
class IncomingMoPart:
    """An MO as delivered: a whole message, or one part of a concatenated one."""

    msisdn: str
    short_number: str
    data_coding: int
    payload: bytes  # without the user data header
    concat: ConcatInfo | None  # None: a message on its own
    smsc_id: str | None  # the SMSC's own id for the MO, when it gives one
    fingerprint: str

    def text(self, default_alphabet: Alphabet) -> str:
        return decode(self.payload, self.data_coding, default_alphabet=default_alphabet)


def fingerprint(pdu: Delivered) -> str:
    """A hash of what the SMSC copies from the handset's message into each delivery of it."""
    tlvs = pdu.tlvs
    fields = (
        pdu.command_id,
        pdu.source_addr_ton,
        pdu.source_addr_npi,
        pdu.source_addr,
        pdu.dest_addr_ton,
        pdu.dest_addr_npi,
        pdu.destination_addr,
        pdu.esm_class,
        pdu.data_coding,
        pdu.short_message.hex() if isinstance(pdu, DeliverSm) else "",
        (tlvs.message_payload or b"").hex(),
        tlvs.sar_msg_ref_num,
        tlvs.sar_total_segments,
        tlvs.sar_segment_seqnum,
        tlvs.source_port,
        tlvs.destination_port,
    )
    return hashlib.sha256(repr(fields).encode()).hexdigest()


def read_mo(pdu: Delivered) -> IncomingMoPart:
    """The MO in a deliver_sm (or data_sm) that is not a receipt.

    A header that does not parse, or a concatenation element out of range, makes the PDU a
    message on its own with every octet as text: a received message is never refused for
    its form (TS 23.040 §9.2.3.24.1 says to ignore such elements).
    """
    body = _body(pdu)
    concat: ConcatInfo | None = None
    payload = body
    try:
        header, payload = split_short_message(body, pdu.esm_class)
        if header is not None:
            concat = header.concat
    except MalformedUdh:
        payload = body
    tlvs = pdu.tlvs
    if (
        concat is None
        and tlvs.sar_msg_ref_num is not None
        and tlvs.sar_total_segments is not None
        and tlvs.sar_segment_seqnum is not None
    ):
        try:
            concat = ConcatInfo(
                ref=tlvs.sar_msg_ref_num,
                total=tlvs.sar_total_segments,
                seq=tlvs.sar_segment_seqnum,
                ref_bits=16,
            )
        except InvalidConcat:
            concat = None
    if concat is not None and concat.total == 1:
        concat = None
    smsc_id = (tlvs.receipted_message_id or "").strip() or None
    return IncomingMoPart(
        msisdn=pdu.source_addr.lstrip("+"),
        short_number=pdu.destination_addr,
        data_coding=pdu.data_coding,
        payload=payload,
        concat=concat,
        smsc_id=smsc_id,
        fingerprint=fingerprint(pdu),
    )
