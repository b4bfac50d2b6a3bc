"""Optional parameters (TLVs, SMPP 3.4 §5.3): the typed table of §5.3.2 and its codec.

A known tag is checked against its size and decoded to the type of its :class:`Tlvs`
attribute; an unknown tag is kept as a :class:`RawTlv`, in order, and encoded back as is.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any, Final, NamedTuple

from .constants import CommandStatus, Tag
from .errors import PduEncodeError, PduError
from .pdu import NO_TLVS, RawTlv, Tlvs

S = CommandStatus
_TAG_LENGTH = struct.Struct(">HH")


class TlvKind(IntEnum):
    INT = 0  # unsigned big-endian integer of exactly min_size octets
    CSTR = 1  # C-Octet string (sizes count the NUL)
    OCTETS = 2  # octet string of min_size..max_size octets
    FLAG = 3  # no value: present or not


_INT, _CSTR, _OCTETS, _FLAG = TlvKind.INT, TlvKind.CSTR, TlvKind.OCTETS, TlvKind.FLAG


class TlvSpec(NamedTuple):
    tag: int
    name: str  # the Tlvs attribute
    kind: TlvKind
    min_size: int  # octets on the wire (a C string's sizes count its NUL)
    max_size: int


def _int(tag: Tag, size: int) -> TlvSpec:
    return TlvSpec(tag, tag.name.lower(), _INT, size, size)


def _octets(tag: Tag, min_size: int, max_size: int) -> TlvSpec:
    return TlvSpec(tag, tag.name.lower(), _OCTETS, min_size, max_size)


def _cstr(tag: Tag, max_size: int) -> TlvSpec:
    return TlvSpec(tag, tag.name.lower(), _CSTR, 1, max_size)


T = Tag
TLV_SPECS: Final[tuple[TlvSpec, ...]] = (
    _int(T.DEST_ADDR_SUBUNIT, 1),
    _int(T.DEST_NETWORK_TYPE, 1),
    _int(T.DEST_BEARER_TYPE, 1),
    _int(T.DEST_TELEMATICS_ID, 2),
    _int(T.SOURCE_ADDR_SUBUNIT, 1),
    _int(T.SOURCE_NETWORK_TYPE, 1),
    _int(T.SOURCE_BEARER_TYPE, 1),
    _int(T.SOURCE_TELEMATICS_ID, 1),
    _int(T.QOS_TIME_TO_LIVE, 4),
    _int(T.PAYLOAD_TYPE, 1),
    _cstr(T.ADDITIONAL_STATUS_INFO_TEXT, 256),
    _cstr(T.RECEIPTED_MESSAGE_ID, 65),
    _int(T.MS_MSG_WAIT_FACILITIES, 1),
    _int(T.PRIVACY_INDICATOR, 1),
    _octets(T.SOURCE_SUBADDRESS, 2, 23),
    _octets(T.DEST_SUBADDRESS, 2, 23),
    _int(T.USER_MESSAGE_REFERENCE, 2),
    _int(T.USER_RESPONSE_CODE, 1),
    _int(T.SOURCE_PORT, 2),
    _int(T.DESTINATION_PORT, 2),
    _int(T.SAR_MSG_REF_NUM, 2),
    _int(T.LANGUAGE_INDICATOR, 1),
    _int(T.SAR_TOTAL_SEGMENTS, 1),
    _int(T.SAR_SEGMENT_SEQNUM, 1),
    _int(T.SC_INTERFACE_VERSION, 1),
    _int(T.CALLBACK_NUM_PRES_IND, 1),
    _octets(T.CALLBACK_NUM_ATAG, 1, 65),
    _int(T.NUMBER_OF_MESSAGES, 1),
    _octets(T.CALLBACK_NUM, 4, 19),
    _int(T.DPF_RESULT, 1),
    _int(T.SET_DPF, 1),
    _int(T.MS_AVAILABILITY_STATUS, 1),
    _octets(T.NETWORK_ERROR_CODE, 3, 3),
    _octets(T.MESSAGE_PAYLOAD, 0, 0xFFFF),
    _int(T.DELIVERY_FAILURE_REASON, 1),
    _int(T.MORE_MESSAGES_TO_SEND, 1),
    _int(T.MESSAGE_STATE, 1),
    _int(T.USSD_SERVICE_OP, 1),
    _int(T.DISPLAY_TIME, 1),
    _int(T.SMS_SIGNAL, 2),
    _int(T.MS_VALIDITY, 1),
    TlvSpec(T.ALERT_ON_MESSAGE_DELIVERY, "alert_on_message_delivery", _FLAG, 0, 0),
    _int(T.ITS_REPLY_TYPE, 1),
    _octets(T.ITS_SESSION_INFO, 2, 2),
)
TLV_BY_TAG: Final[dict[int, TlvSpec]] = {spec.tag: spec for spec in TLV_SPECS}
_TLV_BY_NAME: Final[dict[str, TlvSpec]] = {spec.name: spec for spec in TLV_SPECS}


def decode_tlvs(buf: bytes, pos: int, end: int) -> Tlvs:
    """The optional parameters in ``buf[pos:end]``, which must hold whole TLVs only."""
    if pos == end:
        return NO_TLVS
    known: dict[str, Any] = {}
    unknown: list[RawTlv] = []
    while pos < end:
        if end - pos < 4:
            raise PduError(S.ESME_RINVOPTPARSTREAM, f"{end - pos} stray octets after the TLVs")
        tag, length = _TAG_LENGTH.unpack_from(buf, pos)
        pos += 4
        stop = pos + length
        if stop > end:
            raise PduError(S.ESME_RINVOPTPARSTREAM, f"TLV 0x{tag:04X} runs past the end")
        spec = TLV_BY_TAG.get(tag)
        if spec is None:
            unknown.append(RawTlv(tag, buf[pos:stop]))
        else:
            if spec.name in known:
                raise PduError(S.ESME_RINVOPTPARSTREAM, f"{spec.name} appears twice")
            known[spec.name] = _decode_value(spec, buf[pos:stop])
        pos = stop
    if unknown:
        known["unknown"] = tuple(unknown)
    tlvs = object.__new__(Tlvs)
    # Absent tags read the class-level defaults; equality and repr see the same values.
    tlvs.__dict__.update(known)
    return tlvs


def _decode_value(spec: TlvSpec, raw: bytes) -> object:
    size = len(raw)
    kind = spec.kind
    if kind == _CSTR:
        # Some SMSCs send receipted_message_id without its NUL; the TLV length already
        # bounds the value, so accept it rather than lose a delivery receipt.
        if raw.endswith(b"\0"):
            raw = raw[:-1]
        if 0 in raw or len(raw) >= spec.max_size:
            raise PduError(S.ESME_RINVOPTPARAMVAL, f"{spec.name}: bad C-Octet string")
        return raw.decode("latin-1")
    if size < spec.min_size or size > spec.max_size:
        raise PduError(S.ESME_RINVPARLEN, f"{spec.name}: length {size}")
    if kind == _INT:
        return int.from_bytes(raw, "big")
    if kind == _FLAG:
        return True
    return raw


def encode_tlvs(tlvs: Tlvs, parts: list[bytes]) -> None:
    """Append the wire form of ``tlvs`` to ``parts``: known tags first, then the raw ones."""
    append = parts.append
    # The instance dict holds what was set (all fields after __init__, only the present
    # ones after decode_tlvs); absent values are None or False.
    for name, value in vars(tlvs).items():
        if value is None or value is False or name == "unknown":
            continue
        spec = _TLV_BY_NAME[name]
        raw = _encode_value(spec, value)
        append(_TAG_LENGTH.pack(spec.tag, len(raw)))
        append(raw)
    for tag, raw in tlvs.unknown:
        if tag in TLV_BY_TAG:
            raise PduEncodeError(f"TLV 0x{tag:04X} is known: set Tlvs.{TLV_BY_TAG[tag].name}")
        append(_TAG_LENGTH.pack(tag, len(raw)))
        append(raw)


def _encode_value(spec: TlvSpec, value: Any) -> bytes:
    kind = spec.kind
    if kind == _INT:
        try:
            return int(value).to_bytes(spec.min_size, "big")
        except OverflowError as exc:
            raise PduEncodeError(
                f"{spec.name}: {value} does not fit {spec.min_size} octets"
            ) from exc
    if kind == _CSTR:
        raw = str(value).encode("latin-1") + b"\0"
        if len(raw) > spec.max_size or 0 in raw[:-1]:
            raise PduEncodeError(f"{spec.name}: {value!r} longer than {spec.max_size - 1}")
        return raw
    if kind == _FLAG:
        return b""
    raw = bytes(value)
    if not spec.min_size <= len(raw) <= spec.max_size:
        raise PduEncodeError(
            f"{spec.name}: {len(raw)} octets, not {spec.min_size}..{spec.max_size}"
        )
    return raw
