"""Concatenated SMS: the user data header, the SMPP SAR parameters, and reassembly.

A long message travels as parts tied by a reference number, the part count and each part's
sequence number. Two ways exist on an SMPP link:
- a user data header at the start of short_message, flagged by esm_class bit 6 (UDHI,
  SMPP 3.4 §5.2.12), with information element 0x00 (8-bit reference) or 0x08 (16-bit
  reference), 3GPP TS 23.040 §9.2.3.24.1 and §9.2.3.24.8;
- the TLVs sar_msg_ref_num / sar_total_segments / sar_segment_seqnum (SMPP 3.4 §5.3.2.22-24),
  with which the SMSC builds the header itself.
``ConcatInfo`` is the one representation of both. ``Reassembler`` joins received parts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from smsgate.domain.errors import InvalidConcat, MalformedUdh
from smsgate.domain.text import Alphabet, Segmentation, decode

__all__ = [
    "ESM_UDHI",
    "IEI_CONCAT_8",
    "IEI_CONCAT_16",
    "TAG_SAR_MSG_REF_NUM",
    "TAG_SAR_SEGMENT_SEQNUM",
    "TAG_SAR_TOTAL_SEGMENTS",
    "ConcatInfo",
    "ExpiredPartial",
    "InformationElement",
    "Reassembled",
    "Reassembler",
    "UserDataHeader",
    "build_udh",
    "concat_from_sar",
    "concat_infos",
    "has_udhi",
    "parse_udh",
    "sar_tlvs",
    "split_short_message",
    "with_udh",
]

ESM_UDHI: Final = 0x40  # SMPP 3.4 §5.2.12: esm_class bit 6, short_message starts with a UDH
IEI_CONCAT_8: Final = 0x00
IEI_CONCAT_16: Final = 0x08
TAG_SAR_MSG_REF_NUM: Final = 0x020C
TAG_SAR_TOTAL_SEGMENTS: Final = 0x020E
TAG_SAR_SEGMENT_SEQNUM: Final = 0x020F


@dataclass(frozen=True, slots=True)
class ConcatInfo:
    """Which part of which long message: reference, total parts, this part's number (1-based)."""

    ref: int
    total: int
    seq: int
    ref_bits: int = 8  # 8 (IE 0x00) or 16 (IE 0x08, and SAR's sar_msg_ref_num)

    def __post_init__(self) -> None:
        if self.ref_bits not in (8, 16):
            raise InvalidConcat(f"reference width must be 8 or 16 bits, not {self.ref_bits}")
        if not 0 <= self.ref < 1 << self.ref_bits:
            raise InvalidConcat(f"reference {self.ref} does not fit {self.ref_bits} bits")
        if not 1 <= self.total <= 255:
            raise InvalidConcat(f"total parts {self.total} outside 1..255")
        if not 1 <= self.seq <= self.total:
            raise InvalidConcat(f"part number {self.seq} outside 1..{self.total}")


@dataclass(frozen=True, slots=True)
class InformationElement:
    iei: int
    data: bytes


@dataclass(frozen=True, slots=True)
class UserDataHeader:
    elements: tuple[InformationElement, ...]

    @property
    def concat(self) -> ConcatInfo | None:
        """The first well-formed concatenation element.

        TS 23.040 §9.2.3.24.1: a receiver ignores a concatenation element whose part number
        is 0 or greater than the total; the message is then treated as a single part.
        """
        for element in self.elements:
            info = _concat_from_element(element)
            if info is not None:
                return info
        return None

    def to_bytes(self) -> bytes:
        body = b"".join(bytes([e.iei, len(e.data)]) + e.data for e in self.elements)
        return bytes([len(body)]) + body


def _concat_from_element(element: InformationElement) -> ConcatInfo | None:
    data = element.data
    if element.iei == IEI_CONCAT_8 and len(data) == 3:
        ref, total, seq, bits = data[0], data[1], data[2], 8
    elif element.iei == IEI_CONCAT_16 and len(data) == 4:
        ref, total, seq, bits = int.from_bytes(data[:2], "big"), data[2], data[3], 16
    else:
        return None
    try:
        return ConcatInfo(ref=ref, total=total, seq=seq, ref_bits=bits)
    except InvalidConcat:
        return None


def build_udh(info: ConcatInfo) -> bytes:
    """The whole header, length octet included: 05 00 03 ref total seq, or 06 08 04 ..."""
    if info.ref_bits == 8:
        element = InformationElement(IEI_CONCAT_8, bytes([info.ref, info.total, info.seq]))
    else:
        data = info.ref.to_bytes(2, "big") + bytes([info.total, info.seq])
        element = InformationElement(IEI_CONCAT_16, data)
    return UserDataHeader((element,)).to_bytes()


def parse_udh(short_message: bytes) -> tuple[UserDataHeader, bytes]:
    """Split a short_message that starts with a UDH into the header and the payload after it.

    The payload is returned as carried: for data_coding 0 over SMPP that is unpacked septets
    with no fill bits. Raises MalformedUdh when the lengths do not add up.
    """
    if not short_message:
        raise MalformedUdh("UDHI set but short_message is empty")
    header_length = short_message[0]
    end = 1 + header_length
    if end > len(short_message):
        raise MalformedUdh(
            f"UDH length {header_length} exceeds the {len(short_message) - 1} octets that follow"
        )
    elements: list[InformationElement] = []
    position = 1
    while position < end:
        if position + 2 > end:
            raise MalformedUdh(f"information element header cut at octet {position}")
        iei, iedl = short_message[position], short_message[position + 1]
        data_end = position + 2 + iedl
        if data_end > end:
            raise MalformedUdh(f"information element 0x{iei:02x} runs past the header")
        elements.append(InformationElement(iei, bytes(short_message[position + 2 : data_end])))
        position = data_end
    return UserDataHeader(tuple(elements)), bytes(short_message[end:])


def has_udhi(esm_class: int) -> bool:
    return bool(esm_class & ESM_UDHI)


def split_short_message(
    short_message: bytes, esm_class: int
) -> tuple[UserDataHeader | None, bytes]:
    """Header (when esm_class says there is one) and payload of a received short_message."""
    if not has_udhi(esm_class):
        return None, bytes(short_message)
    return parse_udh(short_message)


def concat_infos(parts: int, ref: int, *, ref_bits: int = 8) -> list[ConcatInfo]:
    """One ConcatInfo per part of a message of ``parts`` parts."""
    return [
        ConcatInfo(ref=ref, total=parts, seq=seq, ref_bits=ref_bits) for seq in range(1, parts + 1)
    ]


def with_udh(segmentation: Segmentation, ref: int, *, ref_bits: int = 8) -> list[bytes]:
    """short_message bodies for each part: header + payload; a single part goes bare.

    Send them with esm_class |= ESM_UDHI when there is more than one. The segmentation must
    have been made with the matching Concat (UDH8 / UDH16) so each part leaves room for it.
    """
    if segmentation.parts == 1:
        return segmentation.payloads
    infos = concat_infos(segmentation.parts, ref, ref_bits=ref_bits)
    return [
        build_udh(info) + seg.payload
        for info, seg in zip(infos, segmentation.segments, strict=True)
    ]


def sar_tlvs(info: ConcatInfo) -> dict[int, bytes]:
    """The three SAR TLVs (tag → value) for one part; sar_msg_ref_num is always 16 bits."""
    return {
        TAG_SAR_MSG_REF_NUM: info.ref.to_bytes(2, "big"),
        TAG_SAR_TOTAL_SEGMENTS: bytes([info.total]),
        TAG_SAR_SEGMENT_SEQNUM: bytes([info.seq]),
    }


def concat_from_sar(tlvs: Mapping[int, bytes]) -> ConcatInfo | None:
    """ConcatInfo from received SAR TLVs; None when absent, malformed or out of range
    (the part is then handled as a single message, as with a bad UDH element)."""
    ref = tlvs.get(TAG_SAR_MSG_REF_NUM)
    total = tlvs.get(TAG_SAR_TOTAL_SEGMENTS)
    seq = tlvs.get(TAG_SAR_SEGMENT_SEQNUM)
    if ref is None or total is None or seq is None:
        return None
    if len(ref) != 2 or len(total) != 1 or len(seq) != 1:
        return None
    try:
        return ConcatInfo(int.from_bytes(ref, "big"), total[0], seq[0], ref_bits=16)
    except InvalidConcat:
        return None


# -- reassembly ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reassembled:
    source: str
    ref: int
    text: str
    payload: bytes  # the joined payloads, for binary messages
    data_coding: int
    parts: int
    first_seen: datetime


@dataclass(frozen=True, slots=True)
class ExpiredPartial:
    source: str
    ref: int
    total: int
    received: tuple[int, ...]  # part numbers that did arrive
    first_seen: datetime


@dataclass(slots=True)
class _Partial:
    total: int
    data_coding: int
    first_seen: datetime
    payloads: dict[int, bytes] = field(default_factory=dict)


class Reassembler:
    """Pure state: collects parts keyed by (source, ref) until a message is whole.

    ``source`` is whatever identifies the sender's reference space to the caller, for
    example ``"link/msisdn/short_number"``. Parts are joined as octets and decoded once, so a
    sender that cut an escape sequence or a surrogate pair across parts still reads right.
    A duplicate part (a redelivery) keeps the first copy. A part whose total disagrees with
    the partial under the same key means the reference was reused: the old partial is dropped.
    Time only enters through the ``now`` arguments.
    """

    def __init__(self, *, default_alphabet: Alphabet = Alphabet.GSM7) -> None:
        self._partials: dict[tuple[str, int], _Partial] = {}
        self._default_alphabet = default_alphabet

    def __len__(self) -> int:
        return len(self._partials)

    def add(
        self, source: str, info: ConcatInfo, payload: bytes, data_coding: int, now: datetime
    ) -> Reassembled | None:
        """Take one part; return the whole message when this part completes it."""
        key = (source, info.ref)
        partial = self._partials.get(key)
        if partial is None or partial.total != info.total:
            partial = _Partial(total=info.total, data_coding=data_coding, first_seen=now)
            self._partials[key] = partial
        partial.payloads.setdefault(info.seq, bytes(payload))
        if len(partial.payloads) < partial.total:
            return None
        del self._partials[key]
        joined = b"".join(partial.payloads[seq] for seq in range(1, partial.total + 1))
        return Reassembled(
            source=source,
            ref=info.ref,
            text=decode(joined, partial.data_coding, default_alphabet=self._default_alphabet),
            payload=joined,
            data_coding=partial.data_coding,
            parts=partial.total,
            first_seen=partial.first_seen,
        )

    def expire(self, now: datetime, max_age: timedelta) -> list[ExpiredPartial]:
        """Drop and return the partials whose first part is older than max_age at ``now``."""
        stale = [key for key, p in self._partials.items() if now - p.first_seen > max_age]
        expired: list[ExpiredPartial] = []
        for key in stale:
            partial = self._partials.pop(key)
            expired.append(
                ExpiredPartial(
                    source=key[0],
                    ref=key[1],
                    total=partial.total,
                    received=tuple(sorted(partial.payloads)),
                    first_seen=partial.first_seen,
                )
            )
        return expired

    def pending(self) -> Sequence[tuple[str, int]]:
        """Keys (source, ref) of the messages still missing parts."""
        return list(self._partials)
