"""Malformed input is refused with the right command_status, and nothing but PduError escapes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.smpp.smpp_strategies import any_pdu

from smsgate.smpp import (
    CommandId,
    CommandStatus,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    EnquireLink,
    PduEncodeError,
    PduError,
    QuerySmResp,
    RawTlv,
    SmeAddress,
    SubmitMulti,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Tlvs,
    decode,
    encode,
)

S = CommandStatus


def frame(command_id: int, body: bytes = b"", *, sequence: int = 7, status: int = 0) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body


def refusal(data: bytes) -> PduError:
    with pytest.raises(PduError) as caught:
        decode(data)
    return caught.value


def submit_body(
    *,
    service_type: bytes = b"",
    source: bytes = b"1851",
    destination: bytes = b"359888000001",
    schedule: bytes = b"",
    validity: bytes = b"",
    sm_length: int | None = None,
    message: bytes = b"hi",
    tail: bytes = b"",
) -> bytes:
    length = len(message) if sm_length is None else sm_length
    return (
        service_type + b"\0" + b"\x01\x01" + source + b"\0" + b"\x01\x01" + destination + b"\0"
        + b"\0\0\0" + schedule + b"\0" + validity + b"\0" + b"\x01\0\0\0"
        + bytes((length,)) + message + tail
    )  # fmt: skip


def test_hand_built_submit_sm_decodes() -> None:
    pdu = decode(frame(CommandId.SUBMIT_SM, submit_body()))
    assert pdu == SubmitSm(
        sequence_number=7,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="1851",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="359888000001",
        registered_delivery=1,
        short_message=b"hi",
    )


def test_shorter_than_a_header() -> None:
    error = refusal(b"\x00\x00\x00\x10\x00")
    assert error.command_status == S.ESME_RINVCMDLEN
    assert error.sequence_number is None


def test_command_length_disagrees_with_the_frame() -> None:
    data = bytearray(frame(CommandId.ENQUIRE_LINK, sequence=42))
    data[3] = 20
    error = refusal(bytes(data))
    assert (error.command_status, error.sequence_number) == (S.ESME_RINVCMDLEN, 42)


def test_unknown_command_id_keeps_the_sequence_number() -> None:
    error = refusal(frame(0x00000099, sequence=9))
    assert (error.command_status, error.sequence_number, error.command_id) == (
        S.ESME_RINVCMDID,
        9,
        0x99,
    )


@pytest.mark.parametrize("extra", [b"\0", b"\0\0\0", b"garbage!"])
def test_bytes_after_a_body_without_tlvs(extra: bytes) -> None:
    assert refusal(frame(CommandId.ENQUIRE_LINK, extra)).command_status == S.ESME_RINVCMDLEN
    body = encode(QuerySmResp(message_id="1"))[16:]
    assert refusal(frame(CommandId.QUERY_SM_RESP, body + extra)).command_status == (
        S.ESME_RINVCMDLEN
    )


@pytest.mark.parametrize("extra", [b"\0", b"\x02\x0c\x00"])
def test_stray_octets_after_the_tlvs(extra: bytes) -> None:
    error = refusal(frame(CommandId.SUBMIT_SM, submit_body(tail=extra)))
    assert error.command_status == S.ESME_RINVOPTPARSTREAM


def test_every_truncation_is_refused() -> None:
    full = encode(SubmitSm(sequence_number=5, source_addr="1851", short_message=b"hello"))
    for cut in range(16, len(full)):
        data = struct.pack(">I", cut) + full[4:cut]
        error = refusal(data)
        assert error.command_status in (S.ESME_RINVCMDLEN, S.ESME_RINVMSGLEN), cut
        assert error.sequence_number == 5


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (submit_body(service_type=b"CMTXYZ"), S.ESME_RINVSERTYP),
        (submit_body(source=b"1" * 21), S.ESME_RINVSRCADR),
        (submit_body(destination=b"3" * 21), S.ESME_RINVDSTADR),
        (submit_body(schedule=b"2601011200000"), S.ESME_RINVSCHED),
        (submit_body(validity=b"000001000000000R0"), S.ESME_RINVEXPIRY),
        (submit_body(sm_length=255, message=b"x" * 255), S.ESME_RINVMSGLEN),
        (submit_body(sm_length=200), S.ESME_RINVMSGLEN),
    ],
    ids=["service_type", "source", "destination", "schedule", "validity", "255", "beyond"],
)
def test_field_errors_name_their_status(body: bytes, status: int) -> None:
    assert refusal(frame(CommandId.SUBMIT_SM, body)).command_status == status


def test_c_string_without_terminator_at_the_end() -> None:
    error = refusal(frame(CommandId.SUBMIT_SM_RESP, b"abc"))
    assert error.command_status == S.ESME_RINVCMDLEN


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"x" * 16 + b"\0" + b"pw\0\0\x34\0\0\0", S.ESME_RINVSYSID),
        (b"sys\0" + b"p" * 9 + b"\0\0\x34\0\0\0", S.ESME_RINVPASWD),
        (b"sys\0pw\0" + b"t" * 13 + b"\0\x34\0\0\0", S.ESME_RINVSYSTYP),
    ],
)
def test_bind_field_errors(body: bytes, status: int) -> None:
    assert refusal(frame(CommandId.BIND_TRANSCEIVER, body)).command_status == status


def test_message_id_too_long() -> None:
    error = refusal(frame(CommandId.SUBMIT_SM_RESP, b"m" * 65 + b"\0"))
    assert error.command_status == S.ESME_RINVMSGID


def test_submit_multi_with_an_unknown_dest_flag() -> None:
    body = b"\0\0\0\0" + b"\x01" + b"\x07abc\0"
    assert refusal(frame(CommandId.SUBMIT_MULTI, body)).command_status == S.ESME_RINVDESTFLAG


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


@pytest.mark.parametrize(
    ("tail", "status"),
    [
        (tlv(Tag.SAR_MSG_REF_NUM, b"\x01"), S.ESME_RINVPARLEN),
        (tlv(Tag.NETWORK_ERROR_CODE, b"\x03\x00"), S.ESME_RINVPARLEN),
        (tlv(Tag.SAR_TOTAL_SEGMENTS, b"\x02") * 2, S.ESME_RINVOPTPARSTREAM),
        (tlv(Tag.RECEIPTED_MESSAGE_ID, b"ab\0cd\0"), S.ESME_RINVOPTPARAMVAL),
        (tlv(Tag.RECEIPTED_MESSAGE_ID, b"x" * 66), S.ESME_RINVOPTPARAMVAL),
        (struct.pack(">HH", Tag.MESSAGE_PAYLOAD, 10) + b"short", S.ESME_RINVOPTPARSTREAM),
    ],
    ids=["int-length", "octets-length", "twice", "inner-nul", "too-long", "past-end"],
)
def test_tlv_errors(tail: bytes, status: int) -> None:
    error = refusal(frame(CommandId.DELIVER_SM, submit_body(tail=tail), sequence=3))
    assert (error.command_status, error.sequence_number) == (status, 3)


def test_tlvs_are_typed_and_unknown_ones_kept_in_order() -> None:
    tail = (
        tlv(0x1401, b"vendor")
        + tlv(Tag.RECEIPTED_MESSAGE_ID, b"ABC123\0")
        + tlv(Tag.MESSAGE_STATE, b"\x02")
        + tlv(Tag.NETWORK_ERROR_CODE, b"\x03\x00\x01")
        + tlv(0x0000, b"")
    )
    pdu = decode(frame(CommandId.DELIVER_SM, submit_body(tail=tail)))
    assert isinstance(pdu, DeliverSm)
    assert pdu.tlvs.receipted_message_id == "ABC123"
    assert pdu.tlvs.message_state == 2
    assert pdu.tlvs.network_error_code == b"\x03\x00\x01"
    assert pdu.tlvs.unknown == (RawTlv(0x1401, b"vendor"), RawTlv(0x0000, b""))
    assert decode(encode(pdu)) == pdu


def test_receipted_message_id_without_its_nul_is_accepted() -> None:
    tail = tlv(Tag.RECEIPTED_MESSAGE_ID, b"ABC123")
    pdu = decode(frame(CommandId.DELIVER_SM, submit_body(tail=tail)))
    assert isinstance(pdu, DeliverSm)
    assert pdu.tlvs.receipted_message_id == "ABC123"


def test_error_responses_without_a_body() -> None:
    throttled = SubmitSmResp(sequence_number=4, command_status=S.ESME_RTHROTTLED)
    assert encode(throttled) == frame(
        CommandId.SUBMIT_SM_RESP, sequence=4, status=S.ESME_RTHROTTLED
    )
    # Responses whose body SMPP 3.4 does not waive keep it, but a bodiless one is accepted.
    nack = DeliverSmResp(sequence_number=4, command_status=S.ESME_RX_T_APPN)
    assert encode(nack) == frame(CommandId.DELIVER_SM_RESP, b"\0", sequence=4, status=0x64)
    assert decode(frame(CommandId.DELIVER_SM_RESP, sequence=4, status=0x64)) == nack
    # ... and an error response that does carry a body keeps it.
    with_id = SubmitSmResp(sequence_number=4, command_status=S.ESME_RSYSERR, message_id="x")
    assert decode(encode(with_id)) == with_id


def test_success_response_without_its_body_is_refused() -> None:
    error = refusal(frame(CommandId.SUBMIT_SM_RESP))
    assert error.command_status == S.ESME_RINVCMDLEN


@pytest.mark.parametrize(
    "pdu",
    [
        SubmitSm(source_addr="1" * 21),
        SubmitSm(destination_addr="a\0b"),
        SubmitSm(source_addr="Ωmega"),
        SubmitSm(short_message=b"x" * 255),
        SubmitSm(esm_class=256),
        SubmitSm(sequence_number=-1),
        SubmitSm(schedule_delivery_time="2601011200"),
        SubmitSm(tlvs=Tlvs(sar_msg_ref_num=0x10000)),
        SubmitSm(tlvs=Tlvs(network_error_code=b"\x03")),
        SubmitSm(tlvs=Tlvs(receipted_message_id="x" * 65)),
        SubmitSm(tlvs=Tlvs(unknown=(RawTlv(Tag.MESSAGE_PAYLOAD, b"x"),))),
        SubmitMulti(dest_addresses=(SmeAddress(1, 1, "3598"),) * 255),
        SubmitMulti(dest_addresses=(DistributionList("x" * 21),)),
        EnquireLink(command_status=2**32),
    ],
    ids=lambda pdu: type(pdu).__name__,
)
def test_unencodable_values(pdu: object) -> None:
    with pytest.raises(PduEncodeError) as caught:
        encode(pdu)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)


def test_encode_refuses_what_is_not_a_pdu() -> None:
    with pytest.raises(PduEncodeError):
        encode(object())  # type: ignore[arg-type]


# --- fuzz ------------------------------------------------------------------------------------


def _decode_or_pdu_error(data: bytes) -> None:
    """Decoding either succeeds or raises PduError with a status to answer; never else."""
    status = S.ESME_ROK
    try:
        decode(data)
    except PduError as error:
        status = error.command_status
        if status == S.ESME_ROK:
            raise


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_pdu_error(data: bytes) -> None:
    _decode_or_pdu_error(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(CommandId)), st.binary(max_size=200), st.integers(0, 2**32 - 1))
def test_random_bodies_under_valid_headers_only_raise_pdu_error(
    command_id: int, body: bytes, status: int
) -> None:
    _decode_or_pdu_error(frame(command_id, body, status=status))


@settings(max_examples=300, deadline=None)
@given(any_pdu, st.data())
def test_mutated_frames_only_raise_pdu_error(pdu: object, data: st.DataObject) -> None:
    original = bytearray(encode(pdu))  # type: ignore[arg-type]
    mutated = original[:]
    for _ in range(data.draw(st.integers(1, 4))):
        choice = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if choice == "flip" and mutated:
            index = data.draw(st.integers(0, len(mutated) - 1))
            mutated[index] = data.draw(st.integers(0, 255))
        elif choice == "cut":
            mutated = mutated[: data.draw(st.integers(0, len(mutated)))]
        elif choice == "insert":
            index = data.draw(st.integers(0, len(mutated)))
            mutated[index:index] = data.draw(st.binary(min_size=1, max_size=8))
        elif choice == "delete" and mutated:
            index = data.draw(st.integers(0, len(mutated) - 1))
            del mutated[index]
    if data.draw(st.booleans()) and len(mutated) >= 4:
        mutated[0:4] = struct.pack(">I", len(mutated))  # keep the framing consistent
    _decode_or_pdu_error(bytes(mutated))
