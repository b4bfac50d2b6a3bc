import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgate.domain.concat import ESM_UDHI, parse_udh
from smsgate.domain.errors import TextTooLong
from smsgate.domain.text import Concat, Encoding, choose_encoding, segment
from smsgate.links.pdus import ClaimedMt, address_of, single_part_payload, submit_pdus
from smsgate.links.settings import link_settings

SETTINGS = link_settings(
    operator_id="op",
    host="127.0.0.1",
    port=1,
    system_id="gw",
    password="pw",
    tps=100,
    window=10,
    settings={},
)
LONG_GSM = "Long message in the GSM 7-bit alphabet. " * 6  # 240 septets
LONG_UCS2 = "Дълго съобщение на кирилица, което не се събира. " * 3


def mt(text: str, **changes: object) -> ClaimedMt:
    base = ClaimedMt(
        id=300,
        msisdn="359888123456",
        sender="1851",
        text=text,
        encoding=choose_encoding(text).value,
        attempts=1,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_single_gsm7_part() -> None:
    ((number, pdu),) = submit_pdus(mt("Hello €"), SETTINGS)
    assert number == 1
    assert pdu.data_coding == 0
    assert pdu.short_message == b"Hello \x1be"
    assert (pdu.source_addr, pdu.source_addr_ton, pdu.source_addr_npi) == ("1851", 0, 1)
    assert (pdu.destination_addr, pdu.dest_addr_ton, pdu.dest_addr_npi) == ("359888123456", 1, 1)
    assert pdu.registered_delivery == 1
    assert pdu.esm_class == 0


def test_a_single_ucs2_part() -> None:
    ((_, pdu),) = submit_pdus(mt("Здравей"), SETTINGS)
    assert (pdu.data_coding, pdu.short_message) == (8, "Здравей".encode("utf-16-be"))


def test_udh_parts_carry_an_8_bit_reference_from_the_mt_id() -> None:
    pdus = submit_pdus(mt(LONG_GSM), SETTINGS)
    assert [number for number, _ in pdus] == [1, 2]
    for number, pdu in pdus:
        assert pdu.esm_class == ESM_UDHI
        header, _ = parse_udh(pdu.short_message)
        info = header.concat
        assert info is not None
        assert (info.ref, info.total, info.seq) == (300 % 256, 2, number)


def test_sar_parts_carry_tlvs_and_no_header() -> None:
    settings = dataclasses.replace(SETTINGS, concat="sar")
    pdus = submit_pdus(mt(LONG_UCS2), settings)
    assert len(pdus) == 3
    for number, pdu in pdus:
        assert pdu.esm_class == 0
        assert pdu.tlvs.sar_msg_ref_num == 300
        assert (pdu.tlvs.sar_total_segments, pdu.tlvs.sar_segment_seqnum) == (3, number)
    joined = b"".join(pdu.short_message for _, pdu in pdus)
    assert joined.decode("utf-16-be") == LONG_UCS2


def test_payload_sends_one_pdu_with_message_payload() -> None:
    settings = dataclasses.replace(SETTINGS, concat="payload")
    ((number, pdu),) = submit_pdus(mt(LONG_GSM), settings)
    assert number == 1
    assert pdu.short_message == b""
    assert pdu.tlvs.message_payload == LONG_GSM.encode("latin-1")


def test_parts_already_accepted_are_not_sent_again() -> None:
    pdus = submit_pdus(mt(LONG_UCS2, done_parts=frozenset({1, 3})), SETTINGS)
    assert [number for number, _ in pdus] == [2]


def test_settings_choose_the_source_numbering_and_the_receipt() -> None:
    settings = dataclasses.replace(SETTINGS, source_ton=2, source_npi=8, dlr_request=False)
    ((_, pdu),) = submit_pdus(mt("x", sender="SHOP"), settings)
    assert (pdu.source_addr_ton, pdu.source_addr_npi, pdu.registered_delivery) == (2, 8, 0)


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("SHOP", (5, 0, "SHOP")),
        ("1851", (0, 1, "1851")),
        ("359888123456", (1, 1, "359888123456")),
        ("+359888123456", (1, 1, "359888123456")),
        ("Shop 24", (5, 0, "Shop 24")),
    ],
)
def test_address_of(sender: str, expected: tuple[int, int, str]) -> None:
    assert address_of(sender) == expected


def test_too_long_a_text_is_a_text_error() -> None:
    with pytest.raises(TextTooLong):
        submit_pdus(mt("x" * 153 * 256), SETTINGS)


@given(st.text(max_size=200))
def test_the_single_part_shortcut_agrees_with_segment(text: str) -> None:
    encoding = choose_encoding(text)
    fast = single_part_payload(text, encoding)
    full = segment(text, encoding=encoding, concat=Concat.UDH8)
    if fast is not None:
        assert full.parts == 1
        assert full.payloads[0] == fast
    elif full.parts == 1 and encoding is Encoding.GSM7:
        # Only characters the table does not know (none in practice) take the long way.
        assert len(text) > 160 or full.length > 160


@given(st.text(alphabet=st.characters(codec="latin-1"), max_size=170))
def test_gsm_text_takes_the_shortcut_whenever_it_fits(text: str) -> None:
    encoding = choose_encoding(text)
    full = segment(text, encoding=encoding)
    fast = single_part_payload(text, encoding)
    if full.parts == 1:
        assert fast == full.payloads[0]
