"""Cross-check against smpp.pdu (the Python 3 port of twisted's smpp.pdu, used by Jasmin).

For every operation it implements, it decodes what we encode to the same field values, and
we decode what it encodes back to our PDU. Values are drawn from what it accepts: it keeps
TON, NPI, esm_class and the like as enums of the listed values only, and parses times.
It does not implement submit_multi(_resp) or replace_sm, drops unknown TLVs, and reads
source_telematics_id as 2 octets where SMPP 3.4 §5.3.2.14 says 1: those stay out.
"""

from __future__ import annotations

import io
from datetime import datetime
from enum import Enum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smpp.pdu import constants, operations, pdu_types, smpp_time
from smpp.pdu.pdu_encoding import DataCodingEncoder, PDUEncoder

from smsgate.smpp import (
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    MessageState,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    RegisteredDelivery,
    ReplaceSmResp,
    Response,
    SubmitSm,
    SubmitSmResp,
    Tlvs,
    Unbind,
    UnbindResp,
    decode,
    encode,
)
from smsgate.smpp.layouts import BODIES, CStr, Int, OptionalParams, ShortMessage, Time

SUPPORTED: list[type[Pdu]] = [
    GenericNack,
    BindTransmitter,
    BindReceiver,
    BindTransceiver,
    BindTransmitterResp,
    BindReceiverResp,
    BindTransceiverResp,
    Outbind,
    Unbind,
    UnbindResp,
    EnquireLink,
    EnquireLinkResp,
    SubmitSm,
    SubmitSmResp,
    DeliverSm,
    DeliverSmResp,
    DataSm,
    DataSmResp,
    QuerySm,
    QuerySmResp,
    CancelSm,
    CancelSmResp,
    ReplaceSmResp,
    AlertNotification,
]

# --- values smpp.pdu accepts -----------------------------------------------------------------


def values_of(name_map: dict[str, int]) -> st.SearchStrategy[int]:
    return st.sampled_from(sorted(name_map.values()))


tons = values_of(constants.addr_ton_name_map)
npis = values_of(constants.addr_npi_name_map)
esm_classes = st.builds(
    lambda mode, kind, udhi, reply: mode | kind | udhi | reply,
    values_of(constants.esm_class_mode_name_map),
    values_of(constants.esm_class_type_name_map),
    st.sampled_from([0, 0x40]),
    st.sampled_from([0, 0x80]),
)
registered_deliveries = st.builds(
    lambda receipt, acks, intermediate: receipt | acks | intermediate,
    st.sampled_from([0, 1, 2]),
    st.sampled_from([0, 4, 8, 12]),
    st.sampled_from([0, 0x10]),
)
# 0xF8-0xFF set a reserved bit of the GSM message-class group that smpp.pdu drops.
data_codings = st.integers(0, 0xF7)
statuses = st.sampled_from(sorted(k for k in constants.command_status_value_map if k >= 0))
error_statuses = statuses.filter(bool)


@st.composite
def smpp_times(draw: st.DrawFn) -> str:
    """SMPP 3.4 §7.1 times in the canonical form smpp.pdu writes back."""
    if draw(st.booleans()):
        pairs = draw(st.lists(st.integers(0, 99), min_size=6, max_size=6))
        return "".join(f"{p:02d}" for p in pairs) + "000R"
    moment = draw(st.datetimes(datetime(2000, 1, 1), datetime(2068, 12, 31, 23, 59, 59)))
    quarters = draw(st.integers(0, 48))
    sign = draw(st.sampled_from("+-")) if quarters else "+"
    tenths = draw(st.integers(0, 9))
    return f"{moment:%y%m%d%H%M%S}{tenths}{quarters:02d}{sign}"


def latin1(max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=max_size - 1)


FIELD_OVERRIDES: dict[str, st.SearchStrategy[Any]] = {
    "addr_ton": tons,
    "addr_npi": npis,
    "source_addr_ton": tons,
    "source_addr_npi": npis,
    "dest_addr_ton": tons,
    "dest_addr_npi": npis,
    "esme_addr_ton": tons,
    "esme_addr_npi": npis,
    "esm_class": esm_classes,
    "priority_flag": st.integers(0, 3),
    "registered_delivery": registered_deliveries,
    "replace_if_present_flag": st.integers(0, 1),
    "data_coding": data_codings,
    "sm_default_msg_id": st.integers(0, 254),
    "message_state": values_of(constants.message_state_name_map),
}

subaddresses = st.builds(
    lambda tag, value: bytes((tag,)) + value,
    values_of(constants.subaddress_type_tag_name_map),
    st.binary(min_size=1, max_size=22),
)
callback_nums = st.builds(
    lambda mode, ton, npi, digits: bytes((mode, ton, npi)) + digits,
    st.sampled_from([0, 1]),
    tons,
    npis,
    st.binary(min_size=1, max_size=16),
)
TLV_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "dest_addr_subunit": values_of(constants.addr_subunit_name_map),
    "source_addr_subunit": values_of(constants.addr_subunit_name_map),
    "dest_network_type": values_of(constants.network_type_name_map),
    "source_network_type": values_of(constants.network_type_name_map),
    "dest_bearer_type": values_of(constants.bearer_type_name_map),
    "source_bearer_type": values_of(constants.bearer_type_name_map),
    "dest_telematics_id": st.integers(0, 0xFFFF),
    "qos_time_to_live": st.integers(0, 0xFFFFFFFF),
    "payload_type": values_of(constants.payload_type_name_map),
    "additional_status_info_text": latin1(256),
    "receipted_message_id": latin1(65),
    "privacy_indicator": values_of(constants.privacy_indicator_name_map),
    "source_subaddress": subaddresses,
    "dest_subaddress": subaddresses,
    "user_message_reference": st.integers(0, 0xFFFF),
    "user_response_code": st.integers(0, 0xFF),
    "source_port": st.integers(0, 0xFFFF),
    "destination_port": st.integers(0, 0xFFFF),
    "sar_msg_ref_num": st.integers(0, 0xFFFF),
    "language_indicator": values_of(constants.language_indicator_name_map),
    "sar_total_segments": st.integers(0, 0xFF),
    "sar_segment_seqnum": st.integers(0, 0xFF),
    "sc_interface_version": st.integers(0, 0xFF),
    "number_of_messages": st.integers(0, 99),
    "callback_num": callback_nums,
    "ms_availability_status": values_of(constants.ms_availability_status_name_map),
    "network_error_code": st.binary(min_size=3, max_size=3),
    "message_payload": st.binary(max_size=300),
    "delivery_failure_reason": values_of(constants.delivery_failure_reason_name_map),
    "more_messages_to_send": values_of(constants.more_messages_to_send_name_map),
    "message_state": values_of(constants.message_state_name_map),
    "display_time": values_of(constants.display_time_name_map),
    "sms_signal": st.integers(0, 0xFFFF),
}


def their_class(cls: type[Pdu]) -> Any:
    return operations.getPDUClass(getattr(pdu_types.CommandId, cls.command_id.name.lower()))


@st.composite
def tlvs_for(draw: st.DrawFn, cls: type[Pdu]) -> Tlvs:
    allowed = [n for n in their_class(cls).optionalParams if n in TLV_VALUES]
    chosen = draw(st.lists(st.sampled_from(allowed), max_size=5, unique=True)) if allowed else []
    return Tlvs(**{name: draw(TLV_VALUES[name]) for name in chosen})


def compatible(cls: type[Pdu]) -> st.SearchStrategy[Pdu]:
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, kind in BODIES[cls]:
        if name in FIELD_OVERRIDES:
            fields[name] = FIELD_OVERRIDES[name]
        elif isinstance(kind, Int):
            fields[name] = st.integers(0, 2 ** (8 * {"B": 1, "H": 2, "I": 4}[kind.fmt]) - 1)
        elif isinstance(kind, CStr):
            fields[name] = latin1(kind.max_size)
        elif isinstance(kind, Time):
            fields[name] = st.one_of(st.just(""), smpp_times())
        elif isinstance(kind, ShortMessage):
            fields[name] = st.binary(max_size=254)
        else:
            assert isinstance(kind, OptionalParams)
            fields[name] = tlvs_for(cls)
    if cls is DeliverSm:  # SMPP 3.4 §4.6.1: NULL in deliver_sm
        fields["schedule_delivery_time"] = st.just("")
    if cls is DeliverSmResp:
        fields["message_id"] = st.just("")
    status = st.just(0)
    if issubclass(cls, Response):
        # smpp.pdu drops the body of these error responses (SMPP 3.4 §4.1.2, §4.4.2)
        no_body = cls in (BindTransmitterResp, BindReceiverResp, BindTransceiverResp, SubmitSmResp)
        status = st.just(0) if no_body else statuses
    return st.builds(
        cls, sequence_number=st.integers(1, 0x7FFFFFFF), command_status=status, **fields
    )


# --- their values in our terms ---------------------------------------------------------------

ENUM_VALUES: dict[str, dict[str, int]] = {
    "AddrTon": constants.addr_ton_name_map,
    "AddrNpi": constants.addr_npi_name_map,
    "PriorityFlag": constants.priority_flag_name_map,
    "ReplaceIfPresentFlag": constants.replace_if_present_flap_name_map,
    "MessageState": constants.message_state_name_map,
    "AddrSubunit": constants.addr_subunit_name_map,
    "NetworkType": constants.network_type_name_map,
    "BearerType": constants.bearer_type_name_map,
    "PayloadType": constants.payload_type_name_map,
    "PrivacyIndicator": constants.privacy_indicator_name_map,
    "LanguageIndicator": constants.language_indicator_name_map,
    "DisplayTime": constants.display_time_name_map,
    "MsAvailabilityStatus": constants.ms_availability_status_name_map,
    "DeliveryFailureReason": constants.delivery_failure_reason_name_map,
    "MoreMessagesToSend": constants.more_messages_to_send_name_map,
}
TIME_FIELDS = {"schedule_delivery_time", "validity_period", "final_date"}


def normalise(name: str, value: Any) -> Any:
    """One of their field values as bytes or int, the way we hold it on the wire."""
    if value is None:
        return 0 if name == "error_code" else b""
    if name in TIME_FIELDS:
        return smpp_time.unparse(value)
    if isinstance(value, pdu_types.EsmClass):
        features = sum(constants.esm_class_gsm_features_name_map[f.name] for f in value.gsmFeatures)
        return (
            constants.esm_class_mode_name_map[value.mode.name]
            | constants.esm_class_type_name_map[value.type.name]
            | features
        )
    if isinstance(value, pdu_types.RegisteredDelivery):
        acks = sum(
            constants.registered_delivery_sme_originated_acks_name_map[a.name]
            for a in value.smeOriginatedAcks
        )
        receipt = constants.registered_delivery_receipt_name_map[value.receipt.name]
        return receipt | acks | (0x10 if value.intermediateNotification else 0)
    if isinstance(value, pdu_types.DataCoding):
        return DataCodingEncoder()._encodeAsInt(value)
    if isinstance(value, pdu_types.CallbackNum):
        mode = constants.callback_num_digit_mode_indicator_name_map[value.digitModeIndicator.name]
        ton = constants.addr_ton_name_map[value.ton.name]
        npi = constants.addr_npi_name_map[value.npi.name]
        return bytes((mode, ton, npi)) + value.digits
    if isinstance(value, pdu_types.Subaddress):
        tag = constants.subaddress_type_tag_name_map[value.typeTag.name]
        return bytes((tag,)) + value.value
    if isinstance(value, Enum):
        return ENUM_VALUES[type(value).__name__][value.name]
    if name == "sms_signal":
        return int.from_bytes(value, "big")
    return value


def ours(pdu: Pdu) -> dict[str, Any]:
    """Our PDU's body as name -> bytes or int (TLVs flattened in, absent ones left out)."""
    result: dict[str, Any] = {}
    for name, _ in BODIES[type(pdu)]:
        value = getattr(pdu, name)
        if isinstance(value, Tlvs):
            for tlv_name, tlv_value in vars(value).items():
                if tlv_value is not None and tlv_value is not False and tlv_name != "unknown":
                    result[tlv_name] = (
                        tlv_value.encode("latin-1") if isinstance(tlv_value, str) else tlv_value
                    )
        else:
            result[name] = value.encode("latin-1") if isinstance(value, str) else value
    return result


def their_status(value: Any) -> int:
    return int(constants.command_status_name_map[value.name])


# --- the checks ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", SUPPORTED, ids=lambda cls: cls.__name__)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_smpp_pdu_reads_what_we_write(cls: type[Pdu], data: st.DataObject) -> None:
    pdu = data.draw(compatible(cls))
    theirs = PDUEncoder().decode(io.BytesIO(encode(pdu)))
    assert theirs.id.name == cls.command_id.name.lower()
    assert theirs.seqNum == pdu.sequence_number
    assert their_status(theirs.status) == pdu.command_status
    got = {name: normalise(name, value) for name, value in theirs.params.items()}
    assert got == ours(pdu)


@pytest.mark.parametrize("cls", SUPPORTED, ids=lambda cls: cls.__name__)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_we_read_what_smpp_pdu_writes(cls: type[Pdu], data: st.DataObject) -> None:
    pdu = data.draw(compatible(cls))
    theirs = PDUEncoder().decode(io.BytesIO(encode(pdu)))
    # A fresh encoder: theirs keeps the last TLV length read and would check against it.
    assert decode(PDUEncoder().encode(theirs)) == pdu


def test_a_delivery_receipt_written_by_smpp_pdu() -> None:
    receipt = operations.DeliverSM(
        seqNum=77,
        service_type="",
        source_addr_ton=pdu_types.AddrTon.INTERNATIONAL,
        source_addr_npi=pdu_types.AddrNpi.ISDN,
        source_addr="359888000001",
        dest_addr_ton=pdu_types.AddrTon.UNKNOWN,
        dest_addr_npi=pdu_types.AddrNpi.UNKNOWN,
        destination_addr="1851",
        esm_class=pdu_types.EsmClass(
            pdu_types.EsmClassMode.DEFAULT, pdu_types.EsmClassType.SMSC_DELIVERY_RECEIPT
        ),
        protocol_id=0,
        priority_flag=pdu_types.PriorityFlag.LEVEL_0,
        registered_delivery=pdu_types.RegisteredDelivery(
            pdu_types.RegisteredDeliveryReceipt.NO_SMSC_DELIVERY_RECEIPT_REQUESTED
        ),
        replace_if_present_flag=pdu_types.ReplaceIfPresentFlag.DO_NOT_REPLACE,
        data_coding=pdu_types.DataCoding(),
        sm_default_msg_id=0,
        short_message=b"id:ABC123 sub:001 dlvrd:001 stat:DELIVRD err:000",
        receipted_message_id="ABC123",
        message_state=pdu_types.MessageState.DELIVERED,
    )
    pdu = decode(PDUEncoder().encode(receipt))
    assert isinstance(pdu, DeliverSm)
    assert pdu.sequence_number == 77
    assert (pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr) == (1, 1, "359888000001")
    assert pdu.esm_class == 0x04
    assert pdu.tlvs.receipted_message_id == "ABC123"
    assert pdu.tlvs.message_state == MessageState.DELIVERED
    assert pdu.short_message.startswith(b"id:ABC123")


def test_a_throttled_submit_sm_resp_written_by_smpp_pdu() -> None:
    resp = operations.SubmitSMResp(seqNum=5, status=pdu_types.CommandStatus.ESME_RTHROTTLED)
    assert decode(PDUEncoder().encode(resp)) == SubmitSmResp(
        sequence_number=5, command_status=CommandStatus.ESME_RTHROTTLED
    )


def test_a_submit_sm_with_registered_delivery_read_by_smpp_pdu() -> None:
    frame = encode(
        SubmitSm(
            sequence_number=9,
            source_addr="SHOP",
            source_addr_ton=5,
            destination_addr="359888000001",
            dest_addr_ton=1,
            dest_addr_npi=1,
            registered_delivery=RegisteredDelivery.RECEIPT,
            data_coding=8,
            short_message="Привет".encode("utf-16-be"),
            tlvs=Tlvs(sar_msg_ref_num=300, sar_total_segments=2, sar_segment_seqnum=1),
        )
    )
    theirs = PDUEncoder().decode(io.BytesIO(frame))
    assert theirs.params["source_addr_ton"] == pdu_types.AddrTon.ALPHANUMERIC
    assert theirs.params["registered_delivery"].receipt == (
        pdu_types.RegisteredDeliveryReceipt.SMSC_DELIVERY_RECEIPT_REQUESTED
    )
    assert theirs.params["data_coding"].schemeData == pdu_types.DataCodingDefault.UCS2
    assert theirs.params["short_message"].decode("utf-16-be") == "Привет"
    assert theirs.params["sar_msg_ref_num"] == 300
