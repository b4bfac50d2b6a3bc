"""Every PDU kind survives encode -> decode, and the wire form is stable."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.smpp.smpp_strategies import ALL_PDU_CLASSES, any_pdu, pdus_of

from smsgate.smpp import PDU_CLASSES, CommandId, Pdu, decode, decode_header, encode


def test_every_operation_of_smpp_3_4_has_a_class() -> None:
    assert set(PDU_CLASSES) == set(CommandId)
    assert set(ALL_PDU_CLASSES) == set(PDU_CLASSES.values())


@pytest.mark.parametrize("cls", ALL_PDU_CLASSES, ids=lambda cls: cls.__name__)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_round_trip_of_each_kind(cls: type[Pdu], data: st.DataObject) -> None:
    pdu = data.draw(pdus_of(cls))
    frame = encode(pdu)
    assert decode(frame) == pdu
    length, command_id, status, sequence = decode_header(frame)
    assert (length, command_id, status, sequence) == (
        len(frame),
        cls.command_id,
        pdu.command_status,
        pdu.sequence_number,
    )


@settings(max_examples=100, deadline=None)
@given(any_pdu)
def test_encoding_is_canonical(pdu: Pdu) -> None:
    frame = encode(pdu)
    assert encode(decode(frame)) == frame
