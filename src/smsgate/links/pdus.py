"""From an MT row to the submit_sm PDUs of its parts (pure: no I/O).

- Encoding: the MT's own (``gsm7``: data_coding 0, unpacked septets; ``ucs2``: data_coding 8,
  UTF-16-BE), as chosen when it was queued.
- Concatenation, by the operator's ``concat`` setting: ``udh`` puts a user data header with an
  8-bit reference in each part (esm_class UDHI, 153 septets / 67 units a part); ``sar`` sends
  the SMPP 3.4 §5.3.2.22-24 TLVs and lets the SMSC build the header; ``payload`` sends the
  whole text in one submit_sm in ``message_payload`` (§5.3.2.32) and the SMSC splits it.
- The concatenation reference is derived from the MT id, so a retried message reuses it.
- Addresses: the destination is an international number (TON 1, NPI 1); the source's
  TON/NPI come from the operator settings, or from the sender's shape when unset.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from smsgate.domain.concat import ESM_UDHI, concat_infos, with_udh
from smsgate.domain.text import GSM_CODEC, Concat, Encoding, encode, segment
from smsgate.links.settings import LinkSettings
from smsgate.smpp import NO_TLVS, Npi, RegisteredDelivery, SubmitSm, Tlvs, Ton

__all__ = ["ClaimedMt", "address_of", "single_part_payload", "submit_pdus"]


def _gsm7_table() -> dict[int, str]:
    """Each GSM 03.38 character (basic and extension) to its unpacked septets, as latin-1
    characters: ``text.translate(table).encode("latin-1")`` encodes a message in one pass."""
    table: dict[int, str] = {}
    for code in range(0x80):
        for raw in (bytes([code]), bytes([0x1B, code])):
            try:
                char = raw.decode(GSM_CODEC)
            except UnicodeDecodeError:
                continue
            if len(char) == 1 and ord(char) not in table and char != "\x1b":
                # Trust the encoder, not the decoder, for what goes on the wire.
                table[ord(char)] = encode(char, Encoding.GSM7).decode("latin-1")
    return table


_GSM7: Final = _gsm7_table()
_GSM7_KNOWN: Final = frozenset(chr(code) for code in _GSM7)


def single_part_payload(text: str, encoding: Encoding) -> bytes | None:
    """The payload of a text that fits one part, computed cheaply; None when it needs more
    parts or the general path (characters outside the alphabet, surrogates)."""
    if encoding is Encoding.GSM7:
        if len(text) > 160 or not _GSM7_KNOWN.issuperset(text):
            return None
        payload = text.translate(_GSM7).encode("latin-1")
        return payload if len(payload) <= 160 else None
    if len(text) > 70:
        return None
    try:
        payload = text.encode("utf-16-be")
    except UnicodeEncodeError:
        return None  # a lone surrogate: segment() replaces it
    return payload if len(payload) <= 140 else None


@dataclass(frozen=True, slots=True)
class ClaimedMt:
    """An MT as the submitter holds it after claiming it."""

    id: int
    msisdn: str
    sender: str
    text: str
    encoding: str
    attempts: int
    done_parts: frozenset[int] = frozenset()
    """Parts the SMSC accepted in an earlier attempt: never sent twice."""


def address_of(sender: str) -> tuple[int, int, str]:
    """(TON, NPI, address) of a sender written as we store it.

    Letters make it alphanumeric (TON 5, NPI 0, SMPP 3.4 §5.2.5); a leading ``+`` or more
    than 8 digits make it an international number; anything else is a short code, sent with
    an unknown TON in the ISDN plan, which SMSCs read in their own network's context.
    """
    if sender.startswith("+") and sender[1:].isdigit():
        return Ton.INTERNATIONAL, Npi.ISDN, sender[1:]
    if not sender.isdigit():
        return Ton.ALPHANUMERIC, Npi.UNKNOWN, sender
    if len(sender) > 8:
        return Ton.INTERNATIONAL, Npi.ISDN, sender
    return Ton.UNKNOWN, Npi.ISDN, sender


def submit_pdus(mt: ClaimedMt, settings: LinkSettings) -> list[tuple[int, SubmitSm]]:
    """(part number, submit_sm) for every part still to send, in order.

    Raises TextError (domain/errors.py) when the text cannot be encoded or is too long.
    """
    encoding = Encoding(mt.encoding)
    ton, npi, source = address_of(mt.sender)
    if settings.source_ton is not None:
        ton = settings.source_ton
    if settings.source_npi is not None:
        npi = settings.source_npi
    destination = mt.msisdn.lstrip("+")
    registered = (
        RegisteredDelivery.RECEIPT if settings.dlr_request else RegisteredDelivery.NO_RECEIPT
    )

    def pdu(short_message: bytes, esm_class: int = 0, tlvs: Tlvs = NO_TLVS) -> SubmitSm:
        return SubmitSm(
            source_addr_ton=ton,
            source_addr_npi=npi,
            source_addr=source,
            dest_addr_ton=Ton.INTERNATIONAL,
            dest_addr_npi=Npi.ISDN,
            destination_addr=destination,
            esm_class=esm_class,
            registered_delivery=registered,
            data_coding=encoding.data_coding,
            short_message=short_message,
            tlvs=tlvs,
        )

    single = single_part_payload(mt.text, encoding)
    if single is not None:
        # The common case: one part, whatever the concatenation method.
        return _keep([(1, pdu(single))], mt.done_parts)
    if settings.concat == "payload":
        whole = segment(mt.text, encoding=encoding)
        payload = b"".join(whole.payloads)
        if whole.parts == 1:
            return _keep([(1, pdu(payload))], mt.done_parts)
        return _keep([(1, pdu(b"", tlvs=Tlvs(message_payload=payload)))], mt.done_parts)
    if settings.concat == "sar":
        parts = segment(mt.text, encoding=encoding, concat=Concat.SAR)
        if parts.parts == 1:
            return _keep([(1, pdu(parts.payloads[0]))], mt.done_parts)
        infos = concat_infos(parts.parts, mt.id % 0x10000, ref_bits=16)
        sar = [
            (
                info.seq,
                pdu(
                    payload,
                    tlvs=Tlvs(
                        sar_msg_ref_num=info.ref,
                        sar_total_segments=info.total,
                        sar_segment_seqnum=info.seq,
                    ),
                ),
            )
            for info, payload in zip(infos, parts.payloads, strict=True)
        ]
        return _keep(sar, mt.done_parts)
    parts = segment(mt.text, encoding=encoding, concat=Concat.UDH8)
    esm_class = ESM_UDHI if parts.parts > 1 else 0
    bodies = with_udh(parts, mt.id % 0x100)
    udh = [(number, pdu(body, esm_class)) for number, body in enumerate(bodies, start=1)]
    return _keep(udh, mt.done_parts)


def _keep(pdus: list[tuple[int, SubmitSm]], done: Collection[int]) -> list[tuple[int, SubmitSm]]:
    if not done:
        return pdus
    return [(number, pdu) for number, pdu in pdus if number not in done]
