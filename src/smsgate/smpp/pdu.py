"""Typed SMPP 3.4 PDUs: one dataclass per operation (SMPP 3.4 §4).

Field names are the specification's. Integer fields are plain ``int`` (use the enums of
``constants`` to write them); C-Octet strings are ``str`` (decoded as latin-1, so every
octet survives a round trip); octet strings are ``bytes``. Optional parameters live in
``tlvs`` (a :class:`Tlvs`), where every tag of §5.3.2 has a typed attribute and tags we do
not know are kept raw so they go back on the wire unchanged.

A request class is generic in its response class, so ``session.send_request(SubmitSm(...))``
is typed as returning ``SubmitSmResp``. ``sequence_number`` is set by the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Generic, NamedTuple, TypeVar

from .constants import INTERFACE_VERSION, CommandId


class RawTlv(NamedTuple):
    """An optional parameter whose tag we do not interpret (vendor or later SMPP versions)."""

    tag: int
    value: bytes


@dataclass(frozen=True, kw_only=True, repr=False)
class Tlvs:
    """The optional parameters of a PDU (SMPP 3.4 §5.3.2); ``None`` means absent.

    Not slotted on purpose: the defaults stay class attributes, so the decoder can build
    an instance holding only the tags present (see ``tlv.decode_tlvs``), which is ten
    times cheaper than passing 45 arguments to a frozen ``__init__``.
    """

    dest_addr_subunit: int | None = None
    dest_network_type: int | None = None
    dest_bearer_type: int | None = None
    dest_telematics_id: int | None = None
    source_addr_subunit: int | None = None
    source_network_type: int | None = None
    source_bearer_type: int | None = None
    source_telematics_id: int | None = None
    qos_time_to_live: int | None = None
    payload_type: int | None = None
    additional_status_info_text: str | None = None
    receipted_message_id: str | None = None
    ms_msg_wait_facilities: int | None = None
    privacy_indicator: int | None = None
    source_subaddress: bytes | None = None
    dest_subaddress: bytes | None = None
    user_message_reference: int | None = None
    user_response_code: int | None = None
    source_port: int | None = None
    destination_port: int | None = None
    sar_msg_ref_num: int | None = None
    language_indicator: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    sc_interface_version: int | None = None
    callback_num_pres_ind: int | None = None
    callback_num_atag: bytes | None = None
    number_of_messages: int | None = None
    callback_num: bytes | None = None
    dpf_result: int | None = None
    set_dpf: int | None = None
    ms_availability_status: int | None = None
    network_error_code: bytes | None = None
    """Three octets: network type (1, see NetworkErrorType) and error code (2)."""
    message_payload: bytes | None = None
    delivery_failure_reason: int | None = None
    more_messages_to_send: int | None = None
    message_state: int | None = None
    ussd_service_op: int | None = None
    display_time: int | None = None
    sms_signal: int | None = None
    ms_validity: int | None = None
    alert_on_message_delivery: bool = False
    """§5.3.2.41: a TLV with no value; True when present."""
    its_reply_type: int | None = None
    its_session_info: bytes | None = None
    unknown: tuple[RawTlv, ...] = ()
    """Tags outside §5.3.2, in wire order."""

    def __repr__(self) -> str:
        present = [
            f"{name}={getattr(self, name)!r}"
            for name in self.__dataclass_fields__
            if getattr(self, name) not in (None, False, ())
        ]
        return f"Tlvs({', '.join(present)})"


NO_TLVS = Tlvs()
"""The shared empty set of optional parameters (Tlvs is immutable, so sharing is safe)."""


@dataclass(slots=True, kw_only=True)
class Pdu:
    """Header fields common to every PDU (SMPP 3.4 §3.2). command_length is computed."""

    command_id: ClassVar[CommandId]
    sequence_number: int = 0
    command_status: int = 0


@dataclass(slots=True, kw_only=True)
class Response(Pdu):
    """A PDU that answers a request with the same sequence number."""


R = TypeVar("R", bound=Response)


@dataclass(slots=True, kw_only=True)
class Request(Pdu, Generic[R]):
    """A PDU that the peer must answer with ``response_class`` (or generic_nack)."""

    response_class: ClassVar[type[Response]]

    def error_response(self, command_status: int) -> Response:
        """The response carrying ``command_status`` and no body, for refusing this request."""
        return self.response_class(
            sequence_number=self.sequence_number, command_status=command_status
        )


@dataclass(slots=True, kw_only=True)
class Notification(Pdu):
    """A PDU that has no response: outbind and alert_notification."""


# --- responses (defined first so requests can name them) -------------------------------


@dataclass(slots=True, kw_only=True)
class GenericNack(Response):
    """SMPP 3.4 §4.3: the answer to a PDU that could not be understood."""

    command_id: ClassVar[CommandId] = CommandId.GENERIC_NACK


@dataclass(slots=True, kw_only=True)
class BindResponse(Response):
    """The body shared by the three bind responses."""

    system_id: str = ""
    tlvs: Tlvs = NO_TLVS


@dataclass(slots=True, kw_only=True)
class BindTransmitterResp(BindResponse):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER_RESP


@dataclass(slots=True, kw_only=True)
class BindReceiverResp(BindResponse):
    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER_RESP


@dataclass(slots=True, kw_only=True)
class BindTransceiverResp(BindResponse):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER_RESP


@dataclass(slots=True, kw_only=True)
class UnbindResp(Response):
    command_id: ClassVar[CommandId] = CommandId.UNBIND_RESP


@dataclass(slots=True, kw_only=True)
class EnquireLinkResp(Response):
    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK_RESP


@dataclass(slots=True, kw_only=True)
class SubmitSmResp(Response):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM_RESP
    message_id: str = ""
    # SMPP 5.0 peers add TLVs here; 3.4 allows none, but refusing them would lose a message id
    tlvs: Tlvs = NO_TLVS


@dataclass(frozen=True, slots=True)
class UnsuccessSme:
    """One failed destination of a submit_multi (SMPP 3.4 §4.5.2)."""

    ton: int = 0
    npi: int = 0
    address: str = ""
    error_status_code: int = 0


@dataclass(slots=True, kw_only=True)
class SubmitMultiResp(Response):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_MULTI_RESP
    message_id: str = ""
    unsuccess_smes: tuple[UnsuccessSme, ...] = ()
    tlvs: Tlvs = NO_TLVS


@dataclass(slots=True, kw_only=True)
class DeliverSmResp(Response):
    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM_RESP
    message_id: str = ""  # §4.6.2: unused, NULL
    tlvs: Tlvs = NO_TLVS


@dataclass(slots=True, kw_only=True)
class DataSmResp(Response):
    command_id: ClassVar[CommandId] = CommandId.DATA_SM_RESP
    message_id: str = ""
    tlvs: Tlvs = NO_TLVS


@dataclass(slots=True, kw_only=True)
class QuerySmResp(Response):
    command_id: ClassVar[CommandId] = CommandId.QUERY_SM_RESP
    message_id: str = ""
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0


@dataclass(slots=True, kw_only=True)
class CancelSmResp(Response):
    command_id: ClassVar[CommandId] = CommandId.CANCEL_SM_RESP


@dataclass(slots=True, kw_only=True)
class ReplaceSmResp(Response):
    command_id: ClassVar[CommandId] = CommandId.REPLACE_SM_RESP


# --- requests ---------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class BindRequest(Request[R]):
    """The body shared by the three binds (SMPP 3.4 §4.1)."""

    system_id: str = ""
    password: str = field(default="", repr=False)
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


@dataclass(slots=True, kw_only=True)
class BindTransmitter(BindRequest[BindTransmitterResp]):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER
    response_class: ClassVar[type[Response]] = BindTransmitterResp


@dataclass(slots=True, kw_only=True)
class BindReceiver(BindRequest[BindReceiverResp]):
    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER
    response_class: ClassVar[type[Response]] = BindReceiverResp


@dataclass(slots=True, kw_only=True)
class BindTransceiver(BindRequest[BindTransceiverResp]):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER
    response_class: ClassVar[type[Response]] = BindTransceiverResp


@dataclass(slots=True, kw_only=True)
class Outbind(Notification):
    """SMPP 3.4 §4.1.7: the SMSC asks the ESME to bind as a receiver."""

    command_id: ClassVar[CommandId] = CommandId.OUTBIND
    system_id: str = ""
    password: str = field(default="", repr=False)


@dataclass(slots=True, kw_only=True)
class Unbind(Request[UnbindResp]):
    command_id: ClassVar[CommandId] = CommandId.UNBIND
    response_class: ClassVar[type[Response]] = UnbindResp


@dataclass(slots=True, kw_only=True)
class EnquireLink(Request[EnquireLinkResp]):
    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK
    response_class: ClassVar[type[Response]] = EnquireLinkResp


@dataclass(slots=True, kw_only=True)
class _ShortMessage(Request[R]):
    """The body shared by submit_sm and deliver_sm (SMPP 3.4 §4.4.1, §4.6.1)."""

    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: Tlvs = NO_TLVS


@dataclass(slots=True, kw_only=True)
class SubmitSm(_ShortMessage[SubmitSmResp]):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM
    response_class: ClassVar[type[Response]] = SubmitSmResp


@dataclass(slots=True, kw_only=True)
class DeliverSm(_ShortMessage[DeliverSmResp]):
    """An MO message, or a delivery receipt when esm_class has TYPE_DELIVERY_RECEIPT."""

    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM
    response_class: ClassVar[type[Response]] = DeliverSmResp


@dataclass(frozen=True, slots=True)
class SmeAddress:
    """A submit_multi destination that is an SME address (dest_flag 1)."""

    ton: int = 0
    npi: int = 0
    address: str = ""


@dataclass(frozen=True, slots=True)
class DistributionList:
    """A submit_multi destination that is a distribution list name (dest_flag 2)."""

    name: str = ""


@dataclass(slots=True, kw_only=True)
class SubmitMulti(Request[SubmitMultiResp]):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_MULTI
    response_class: ClassVar[type[Response]] = SubmitMultiResp
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addresses: tuple[SmeAddress | DistributionList, ...] = ()
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: Tlvs = NO_TLVS


@dataclass(slots=True, kw_only=True)
class DataSm(Request[DataSmResp]):
    command_id: ClassVar[CommandId] = CommandId.DATA_SM
    response_class: ClassVar[type[Response]] = DataSmResp
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    tlvs: Tlvs = NO_TLVS


@dataclass(slots=True, kw_only=True)
class QuerySm(Request[QuerySmResp]):
    command_id: ClassVar[CommandId] = CommandId.QUERY_SM
    response_class: ClassVar[type[Response]] = QuerySmResp
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""


@dataclass(slots=True, kw_only=True)
class CancelSm(Request[CancelSmResp]):
    command_id: ClassVar[CommandId] = CommandId.CANCEL_SM
    response_class: ClassVar[type[Response]] = CancelSmResp
    service_type: str = ""
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""


@dataclass(slots=True, kw_only=True)
class ReplaceSm(Request[ReplaceSmResp]):
    command_id: ClassVar[CommandId] = CommandId.REPLACE_SM
    response_class: ClassVar[type[Response]] = ReplaceSmResp
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


@dataclass(slots=True, kw_only=True)
class AlertNotification(Notification):
    """SMPP 3.4 §4.12: the SMSC tells the ESME that a subscriber became reachable."""

    command_id: ClassVar[CommandId] = CommandId.ALERT_NOTIFICATION
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    esme_addr_ton: int = 0
    esme_addr_npi: int = 0
    esme_addr: str = ""
    tlvs: Tlvs = NO_TLVS
