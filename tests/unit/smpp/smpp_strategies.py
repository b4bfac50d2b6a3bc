"""Hypothesis strategies for every SMPP PDU, derived from the codec's own layouts.

Values span the whole wire range the codec accepts (any octet but NUL in strings, any
integer of the field's size), so the round-trip tests cover more than real traffic does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import strategies as st

from smsgate.smpp import DistributionList, Pdu, RawTlv, SmeAddress, Tlvs, UnsuccessSme
from smsgate.smpp.layouts import (
    BODIES,
    CStr,
    DestList,
    Int,
    OptionalParams,
    ShortMessage,
    Time,
    UnsuccessList,
)
from smsgate.smpp.tlv import TLV_BY_TAG, TLV_SPECS, TlvKind, TlvSpec

ALL_PDU_CLASSES: list[type[Pdu]] = list(BODIES)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
_INTS = {"B": u8, "H": u16, "I": u32}


def cstrings(max_size: int) -> st.SearchStrategy[str]:
    """A C-Octet string value: latin-1 characters but NUL, at most max_size - 1 of them."""
    return st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=max_size - 1)


times = st.one_of(
    st.just(""),
    st.text(st.characters(min_codepoint=1, max_codepoint=255), min_size=16, max_size=16),
)
short_messages = st.binary(max_size=254)
sme_addresses = st.builds(SmeAddress, u8, u8, cstrings(21))
dest_addresses = st.lists(
    st.one_of(sme_addresses, st.builds(DistributionList, cstrings(21))), max_size=6
).map(tuple)
unsuccess_smes = st.lists(st.builds(UnsuccessSme, u8, u8, cstrings(21), u32), max_size=6).map(tuple)


def _tlv_value(spec: TlvSpec) -> st.SearchStrategy[Any]:
    if spec.kind is TlvKind.INT:
        return st.integers(0, 2 ** (8 * spec.min_size) - 1)
    if spec.kind is TlvKind.CSTR:
        return cstrings(spec.max_size)
    if spec.kind is TlvKind.FLAG:
        return st.just(True)
    return st.binary(min_size=spec.min_size, max_size=min(spec.max_size, 300))


unknown_tlvs = st.lists(
    st.builds(
        RawTlv,
        st.integers(0, 0xFFFF).filter(lambda tag: tag not in TLV_BY_TAG),
        st.binary(max_size=20),
    ),
    max_size=3,
).map(tuple)


@st.composite
def tlvs(draw: st.DrawFn) -> Tlvs:
    chosen = draw(st.lists(st.sampled_from(TLV_SPECS), max_size=6, unique=True))
    values = {spec.name: draw(_tlv_value(spec)) for spec in chosen}
    return Tlvs(**values, unknown=draw(unknown_tlvs))


def _field_strategy(kind: Any) -> st.SearchStrategy[Any]:
    if isinstance(kind, Int):
        return _INTS[kind.fmt]
    if isinstance(kind, CStr):
        return cstrings(kind.max_size)
    if isinstance(kind, Time):
        return times
    if isinstance(kind, ShortMessage):
        return short_messages
    if isinstance(kind, DestList):
        return dest_addresses
    if isinstance(kind, UnsuccessList):
        return unsuccess_smes
    assert isinstance(kind, OptionalParams)
    return st.one_of(st.just(Tlvs()), tlvs())


def pdus_of(cls: type[Pdu]) -> st.SearchStrategy[Pdu]:
    """Any valid PDU of class ``cls``."""
    body = {name: _field_strategy(kind) for name, kind in BODIES[cls]}
    assert set(body) == {f.name for f in dataclasses.fields(cls)} - {
        "sequence_number",
        "command_status",
    }
    return st.builds(cls, sequence_number=u32, command_status=u32, **body)


any_pdu = st.sampled_from(ALL_PDU_CLASSES).flatmap(pdus_of)
