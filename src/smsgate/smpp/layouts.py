"""The body of every SMPP 3.4 operation as a list of fields in wire order (SMPP 3.4 §4).

Pure description: ``codec`` compiles it into encoders and decoders. C-Octet string sizes
count the terminating NUL, as the specification's tables do; the status of a string field
is what to answer when the peer's value is too long.
"""

from __future__ import annotations

from typing import NamedTuple

from .constants import CommandStatus
from .pdu import (
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)

S = CommandStatus


class Int(NamedTuple):
    """A 1, 2 or 4 octet unsigned big-endian integer."""

    fmt: str  # struct code: B, H or I


class CStr(NamedTuple):
    """A NUL-terminated string of at most ``max_size`` octets, NUL included."""

    max_size: int
    status: int


class Time(NamedTuple):
    """SMPP 3.4 §7.1: NULL, or 16 characters (YYMMDDhhmmsstnnp) and the NUL."""

    status: int


class ShortMessage(NamedTuple):
    """sm_length (1 octet, 0-254) followed by that many octets."""


class DestList(NamedTuple):
    """submit_multi: number_of_dests then each dest_flag and its address (§4.5.1)."""


class UnsuccessList(NamedTuple):
    """submit_multi_resp: no_unsuccess then each failed address and its status (§4.5.2)."""


class OptionalParams(NamedTuple):
    """Zero or more TLVs to the end of the PDU (§3.2.4)."""


FieldKind = Int | CStr | Time | ShortMessage | DestList | UnsuccessList | OptionalParams
Body = tuple[tuple[str, FieldKind], ...]

U8, U16, U32 = Int("B"), Int("H"), Int("I")
TLVS = ("tlvs", OptionalParams())

_SYSTEM_ID = ("system_id", CStr(16, S.ESME_RINVSYSID))
_PASSWORD = ("password", CStr(9, S.ESME_RINVPASWD))
_SERVICE_TYPE = ("service_type", CStr(6, S.ESME_RINVSERTYP))
_MESSAGE_ID = ("message_id", CStr(65, S.ESME_RINVMSGID))
_SOURCE_21: Body = (
    ("source_addr_ton", U8),
    ("source_addr_npi", U8),
    ("source_addr", CStr(21, S.ESME_RINVSRCADR)),
)
_DEST_21: Body = (
    ("dest_addr_ton", U8),
    ("dest_addr_npi", U8),
    ("destination_addr", CStr(21, S.ESME_RINVDSTADR)),
)
_SCHEDULE = ("schedule_delivery_time", Time(S.ESME_RINVSCHED))
_VALIDITY = ("validity_period", Time(S.ESME_RINVEXPIRY))

_BIND: Body = (
    _SYSTEM_ID,
    _PASSWORD,
    ("system_type", CStr(13, S.ESME_RINVSYSTYP)),
    ("interface_version", U8),
    ("addr_ton", U8),
    ("addr_npi", U8),
    ("address_range", CStr(41, S.ESME_RINVPARLEN)),
)
_BIND_RESP: Body = (_SYSTEM_ID, TLVS)

# From esm_class on, submit_sm, deliver_sm and submit_multi are the same (§4.4.1, §4.6.1).
_MESSAGE_TAIL: Body = (
    ("esm_class", U8),
    ("protocol_id", U8),
    ("priority_flag", U8),
    _SCHEDULE,
    _VALIDITY,
    ("registered_delivery", U8),
    ("replace_if_present_flag", U8),
    ("data_coding", U8),
    ("sm_default_msg_id", U8),
    ("short_message", ShortMessage()),
    TLVS,
)
_SHORT_MESSAGE: Body = (_SERVICE_TYPE, *_SOURCE_21, *_DEST_21, *_MESSAGE_TAIL)

BODIES: dict[type[Pdu], Body] = {
    GenericNack: (),
    BindTransmitter: _BIND,
    BindReceiver: _BIND,
    BindTransceiver: _BIND,
    BindTransmitterResp: _BIND_RESP,
    BindReceiverResp: _BIND_RESP,
    BindTransceiverResp: _BIND_RESP,
    Outbind: (_SYSTEM_ID, _PASSWORD),
    Unbind: (),
    UnbindResp: (),
    EnquireLink: (),
    EnquireLinkResp: (),
    SubmitSm: _SHORT_MESSAGE,
    SubmitSmResp: (_MESSAGE_ID, TLVS),
    DeliverSm: _SHORT_MESSAGE,
    DeliverSmResp: (_MESSAGE_ID, TLVS),
    SubmitMulti: (_SERVICE_TYPE, *_SOURCE_21, ("dest_addresses", DestList()), *_MESSAGE_TAIL),
    SubmitMultiResp: (_MESSAGE_ID, ("unsuccess_smes", UnsuccessList()), TLVS),
    DataSm: (
        _SERVICE_TYPE,
        ("source_addr_ton", U8),
        ("source_addr_npi", U8),
        ("source_addr", CStr(65, S.ESME_RINVSRCADR)),
        ("dest_addr_ton", U8),
        ("dest_addr_npi", U8),
        ("destination_addr", CStr(65, S.ESME_RINVDSTADR)),
        ("esm_class", U8),
        ("registered_delivery", U8),
        ("data_coding", U8),
        TLVS,
    ),
    DataSmResp: (_MESSAGE_ID, TLVS),
    QuerySm: (_MESSAGE_ID, *_SOURCE_21),
    QuerySmResp: (
        _MESSAGE_ID,
        ("final_date", Time(S.ESME_RINVPARLEN)),
        ("message_state", U8),
        ("error_code", U8),
    ),
    CancelSm: (_SERVICE_TYPE, _MESSAGE_ID, *_SOURCE_21, *_DEST_21),
    CancelSmResp: (),
    ReplaceSm: (
        _MESSAGE_ID,
        *_SOURCE_21,
        _SCHEDULE,
        _VALIDITY,
        ("registered_delivery", U8),
        ("sm_default_msg_id", U8),
        ("short_message", ShortMessage()),
    ),
    ReplaceSmResp: (),
    AlertNotification: (
        ("source_addr_ton", U8),
        ("source_addr_npi", U8),
        ("source_addr", CStr(65, S.ESME_RINVSRCADR)),
        ("esme_addr_ton", U8),
        ("esme_addr_npi", U8),
        ("esme_addr", CStr(65, S.ESME_RINVDSTADR)),
        TLVS,
    ),
}

NO_BODY_ON_ERROR: frozenset[type[Pdu]] = frozenset(
    (BindTransmitterResp, BindReceiverResp, BindTransceiverResp, SubmitSmResp)
)
"""SMPP 3.4 §4.1.2, §4.1.4, §4.1.6, §4.4.2: these responses carry no body when the
command_status is not 0. Other responses keep theirs (a peer may parse it strictly)."""
