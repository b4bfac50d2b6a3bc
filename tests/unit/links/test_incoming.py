from smsgate.domain.concat import ESM_UDHI, ConcatInfo, build_udh
from smsgate.domain.text import Alphabet
from smsgate.links.incoming import fingerprint, is_receipt, read_mo, read_receipt
from smsgate.smpp import DataSm, DeliverSm, Tlvs


def deliver(**fields: object) -> DeliverSm:
    base: dict[str, object] = {"source_addr": "+359888111222", "destination_addr": "1851"}
    base.update(fields)
    return DeliverSm(**base)  # type: ignore[arg-type]


def test_receipt_types_of_esm_class() -> None:
    assert is_receipt(deliver(esm_class=0x04))
    assert is_receipt(deliver(esm_class=0x08))
    assert is_receipt(deliver(esm_class=0x20))
    assert not is_receipt(deliver(esm_class=0x00))
    assert not is_receipt(deliver(esm_class=ESM_UDHI))


def test_a_plain_mo() -> None:
    part = read_mo(deliver(short_message=b"KOD 1"))
    assert (part.msisdn, part.short_number, part.concat, part.smsc_id) == (
        "359888111222",
        "1851",
        None,
        None,
    )
    assert part.text(Alphabet.GSM7) == "KOD 1"


def test_a_part_with_a_udh() -> None:
    info = ConcatInfo(ref=5, total=3, seq=2)
    part = read_mo(deliver(esm_class=ESM_UDHI, short_message=build_udh(info) + b"abc"))
    assert part.concat == info
    assert part.payload == b"abc"


def test_a_part_with_sar_tlvs() -> None:
    tlvs = Tlvs(sar_msg_ref_num=700, sar_total_segments=2, sar_segment_seqnum=1)
    part = read_mo(deliver(short_message=b"abc", tlvs=tlvs))
    assert part.concat == ConcatInfo(ref=700, total=2, seq=1, ref_bits=16)


def test_a_broken_header_makes_a_message_on_its_own() -> None:
    part = read_mo(deliver(esm_class=ESM_UDHI, short_message=b"\x09\x00\x03"))
    assert part.concat is None
    assert part.payload == b"\x09\x00\x03"


def test_out_of_range_sar_values_are_ignored() -> None:
    tlvs = Tlvs(sar_msg_ref_num=1, sar_total_segments=2, sar_segment_seqnum=3)
    assert read_mo(deliver(short_message=b"x", tlvs=tlvs)).concat is None


def test_a_one_part_concatenation_is_a_plain_message() -> None:
    info = ConcatInfo(ref=5, total=1, seq=1)
    assert read_mo(deliver(esm_class=ESM_UDHI, short_message=build_udh(info) + b"a")).concat is None


def test_message_payload_and_data_sm() -> None:
    assert read_mo(deliver(tlvs=Tlvs(message_payload=b"long"))).payload == b"long"
    data = DataSm(source_addr="1", destination_addr="2", tlvs=Tlvs(message_payload=b"hi"))
    assert read_mo(data).payload == b"hi"


def test_an_id_from_the_smsc() -> None:
    part = read_mo(deliver(short_message=b"x", tlvs=Tlvs(receipted_message_id="A1")))
    assert part.smsc_id == "A1"


def test_the_fingerprint_ignores_the_sequence_number_only() -> None:
    one = deliver(short_message=b"KOD", sequence_number=1)
    again = deliver(short_message=b"KOD", sequence_number=99)
    other = deliver(short_message=b"KOD2", sequence_number=1)
    elsewhere = deliver(short_message=b"KOD", destination_addr="1852")
    assert fingerprint(one) == fingerprint(again)
    assert len({fingerprint(one), fingerprint(other), fingerprint(elsewhere)}) == 3


def test_a_ucs2_receipt_text_is_read() -> None:
    text = "id:7 stat:DELIVRD err:000"
    pdu = deliver(esm_class=4, data_coding=8, short_message=text.encode("utf-16-be"))
    receipt = read_receipt(pdu, None)
    assert receipt is not None and (receipt.message_id, receipt.state) == ("7", "delivered")
