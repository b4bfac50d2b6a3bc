"""What the SMSC does with message octets: inbox reassembly, MO parts, receipt samples."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from smsgate.domain.concat import Reassembler, build_udh, concat_infos, split_short_message
from smsgate.domain.text import Concat, decode, segment
from smsgate.simulator.handsets import Handsets
from smsgate.simulator.messages import Mailroom, MoBuilder, MtPart, sample_text, smpp_time
from smsgate.simulator.receipts import TEXT_SAMPLE

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GSM_TEXT = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?@£$_{}[]~€^|äöüñ",
    max_size=500,
)
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=300)


def part(body: bytes, *, esm_class: int = 0, data_coding: int = 0, message_id: str = "1") -> MtPart:
    return MtPart("op", "SHOP", "359888123456", esm_class, data_coding, body, None, message_id)


@settings(max_examples=60, deadline=None)
@given(ANY_TEXT)
def test_parts_with_udh_in_any_order_make_one_message(text: str) -> None:
    segmentation = segment(text, concat=Concat.UDH8)
    infos = concat_infos(segmentation.parts, 7)
    mailroom = Mailroom(Handsets())
    pieces = list(zip(infos, segmentation.payloads, strict=True))
    for index, (info, payload) in enumerate(reversed(pieces)):
        body = build_udh(info) + payload if segmentation.parts > 1 else payload
        mailroom.deliver(
            part(
                body,
                esm_class=0x40 if segmentation.parts > 1 else 0,
                data_coding=segmentation.data_coding,
                message_id=str(index),
            ),
            NOW,
        )
    [message] = mailroom.handsets.inbox("359888123456")
    assert message.text == text
    assert message.parts == segmentation.parts
    assert mailroom.pending_partials == 0


def test_a_missing_part_keeps_the_message_out_and_expires() -> None:
    mailroom = Mailroom(Handsets())
    [first, _second] = segment("x" * 200, concat=Concat.UDH8).payloads
    info = concat_infos(2, 1)[0]
    assert mailroom.deliver(part(build_udh(info) + first, esm_class=0x40), NOW) is None
    assert mailroom.handsets.inbox("359888123456") == []
    assert mailroom.expire(datetime(2026, 1, 2, tzinfo=UTC)) == 1
    assert mailroom.partials_expired == 1 and mailroom.pending_partials == 0


def test_a_broken_udh_is_kept_as_it_came() -> None:
    mailroom = Mailroom(Handsets())
    mailroom.deliver(part(b"\x09\x00\x03", esm_class=0x40), NOW)
    [message] = mailroom.handsets.inbox("359888123456")
    assert message.parts == 1


@settings(max_examples=80, deadline=None)
@given(ANY_TEXT)
def test_mo_parts_join_back_to_the_text(text: str) -> None:
    pdus = MoBuilder().parts(msisdn="359888123456", short_number="1851", text=text)
    if len(pdus) == 1:
        assert decode(pdus[0].short_message, pdus[0].data_coding) == text
        return
    reassembler = Reassembler()
    whole = None
    for pdu in pdus:
        header, payload = split_short_message(pdu.short_message, pdu.esm_class)
        assert header is not None and header.concat is not None
        whole = reassembler.add("mo", header.concat, payload, pdu.data_coding, NOW) or whole
    assert whole is not None and whole.text == text


def test_mo_references_change_between_messages() -> None:
    builder = MoBuilder()
    first = builder.parts(msisdn="1", short_number="2", text="y" * 200)
    second = builder.parts(msisdn="1", short_number="2", text="y" * 200)
    assert first[0].short_message[3] != second[0].short_message[3]


@given(GSM_TEXT, st.booleans())
def test_the_receipt_sample_is_the_start_of_the_text(text: str, with_udh: bool) -> None:
    [payload, *_] = segment(text).payloads if text else [b""]
    header = build_udh(concat_infos(2, 1)[0]) if with_udh else b""
    sample = sample_text(part(header + payload, esm_class=0x40 if with_udh else 0))
    assert sample == decode(payload, 0)[:TEXT_SAMPLE]


def test_the_receipt_sample_of_ucs2() -> None:
    body = "Здравей, това е тест на кирилица".encode("utf-16-be")
    assert sample_text(part(body, data_coding=8)) == "Здравей, това е тест"


def test_smpp_absolute_time() -> None:
    when = datetime(2026, 3, 9, 14, 5, 59, 730_000, tzinfo=UTC)
    assert smpp_time(when) == "260309140559700+"
    assert len(smpp_time(when)) == 16
