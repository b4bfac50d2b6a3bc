"""Concatenation headers, SAR parameters and reassembly of received parts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgate.domain.concat import (
    ESM_UDHI,
    TAG_SAR_MSG_REF_NUM,
    TAG_SAR_SEGMENT_SEQNUM,
    TAG_SAR_TOTAL_SEGMENTS,
    ConcatInfo,
    InformationElement,
    Reassembler,
    UserDataHeader,
    build_udh,
    concat_from_sar,
    concat_infos,
    parse_udh,
    sar_tlvs,
    split_short_message,
    with_udh,
)
from smsgate.domain.errors import InvalidConcat, MalformedUdh
from smsgate.domain.text import DC_BINARY, DC_DEFAULT, DC_UCS2, Concat, decode, segment

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@st.composite
def concat_infos_any(draw: st.DrawFn) -> ConcatInfo:
    bits = draw(st.sampled_from([8, 16]))
    total = draw(st.integers(1, 255))
    return ConcatInfo(
        ref=draw(st.integers(0, (1 << bits) - 1)),
        total=total,
        seq=draw(st.integers(1, total)),
        ref_bits=bits,
    )


class TestUdh:
    def test_eight_bit_reference_layout(self) -> None:
        assert build_udh(ConcatInfo(ref=0x2A, total=3, seq=2)) == bytes.fromhex("0500032a0302")

    def test_sixteen_bit_reference_layout(self) -> None:
        info = ConcatInfo(ref=0x1234, total=2, seq=1, ref_bits=16)
        assert build_udh(info) == bytes.fromhex("060804123402" + "01")

    def test_parse_returns_payload_after_header(self) -> None:
        header, payload = parse_udh(bytes.fromhex("0500032a0302") + b"hello")
        assert payload == b"hello"
        assert header.concat == ConcatInfo(ref=0x2A, total=3, seq=2)

    def test_other_elements_are_kept(self) -> None:
        raw = bytes.fromhex("08" + "0a0100" + "00032a0201") + b"x"
        header, payload = parse_udh(raw)
        assert header.elements[0] == InformationElement(0x0A, b"\x00")
        assert header.concat == ConcatInfo(ref=0x2A, total=2, seq=1)
        assert payload == b"x"
        assert header.to_bytes() == raw[:-1]

    def test_part_number_zero_is_ignored_per_23040(self) -> None:
        header, _ = parse_udh(bytes.fromhex("050003010300"))
        assert header.concat is None

    def test_part_number_above_total_is_ignored(self) -> None:
        header, _ = parse_udh(bytes.fromhex("050003010304"))
        assert header.concat is None

    @pytest.mark.parametrize(
        "raw",
        [b"", bytes.fromhex("05000301"), bytes.fromhex("0300050102"), bytes.fromhex("0100")],
    )
    def test_malformed_headers(self, raw: bytes) -> None:
        with pytest.raises(MalformedUdh):
            parse_udh(raw)

    def test_split_only_when_udhi_set(self) -> None:
        raw = bytes.fromhex("0500032a0302") + b"hi"
        assert split_short_message(raw, 0) == (None, raw)
        header, payload = split_short_message(raw, ESM_UDHI)
        assert header is not None
        assert payload == b"hi"

    @settings(deadline=None)
    @given(concat_infos_any(), st.binary(max_size=140))
    def test_build_parse_round_trip(self, info: ConcatInfo, payload: bytes) -> None:
        header, rest = parse_udh(build_udh(info) + payload)
        assert header.concat == info
        assert rest == payload

    @settings(deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=20)), max_size=6))
    def test_header_bytes_round_trip(self, elements: list[tuple[int, bytes]]) -> None:
        header = UserDataHeader(tuple(InformationElement(i, d) for i, d in elements))
        raw = header.to_bytes()
        if len(raw) - 1 > 255:
            return
        assert parse_udh(raw + b"tail") == (header, b"tail")


class TestConcatInfo:
    @pytest.mark.parametrize(
        ("ref", "total", "seq", "bits"),
        [
            (256, 2, 1, 8),
            (-1, 2, 1, 8),
            (0, 0, 1, 8),
            (0, 256, 1, 8),
            (0, 2, 0, 8),
            (0, 2, 3, 8),
            (65536, 2, 1, 16),
            (0, 2, 1, 12),
        ],
    )
    def test_out_of_range(self, ref: int, total: int, seq: int, bits: int) -> None:
        with pytest.raises(InvalidConcat):
            ConcatInfo(ref, total, seq, ref_bits=bits)

    def test_concat_infos_numbers_from_one(self) -> None:
        assert [i.seq for i in concat_infos(3, 7)] == [1, 2, 3]
        assert {i.total for i in concat_infos(3, 7)} == {3}


class TestSar:
    def test_tlvs(self) -> None:
        tlvs = sar_tlvs(ConcatInfo(ref=0x0102, total=3, seq=2, ref_bits=16))
        assert tlvs == {
            TAG_SAR_MSG_REF_NUM: b"\x01\x02",
            TAG_SAR_TOTAL_SEGMENTS: b"\x03",
            TAG_SAR_SEGMENT_SEQNUM: b"\x02",
        }

    @settings(deadline=None)
    @given(concat_infos_any())
    def test_round_trip(self, info: ConcatInfo) -> None:
        back = concat_from_sar(sar_tlvs(info))
        assert back == ConcatInfo(info.ref, info.total, info.seq, ref_bits=16)

    def test_absent_or_bad_is_none(self) -> None:
        assert concat_from_sar({}) is None
        bad = {
            TAG_SAR_MSG_REF_NUM: b"\x01",
            TAG_SAR_TOTAL_SEGMENTS: b"\x02",
            TAG_SAR_SEGMENT_SEQNUM: b"\x01",
        }
        assert concat_from_sar(bad) is None
        zero = {
            TAG_SAR_MSG_REF_NUM: b"\x00\x01",
            TAG_SAR_TOTAL_SEGMENTS: b"\x02",
            TAG_SAR_SEGMENT_SEQNUM: b"\x00",
        }
        assert concat_from_sar(zero) is None


class TestWithUdh:
    def test_single_part_goes_bare(self) -> None:
        assert with_udh(segment("hello"), ref=1) == [b"hello"]

    def test_each_part_gets_its_header(self) -> None:
        bodies = with_udh(segment("a" * 200), ref=9)
        assert bodies[0][:6] == bytes.fromhex("050003090201")
        assert bodies[1][:6] == bytes.fromhex("050003090202")
        assert all(len(body) <= 6 + 153 for body in bodies)

    def test_sixteen_bit_parts_fit_140_octets_when_packed(self) -> None:
        seg = segment("a" * 400, concat=Concat.UDH16)
        for body in with_udh(seg, ref=0xBEEF, ref_bits=16):
            header, septets = parse_udh(body)
            # 7 octets of header + 152 septets packed = 7 + 133 = 140 octets.
            assert len(header.to_bytes()) + (len(septets) * 7 + 7) // 8 <= 140


class TestReassembler:
    def test_parts_in_any_order_make_the_message(self) -> None:
        seg = segment("x" * 300 + "€")
        reassembler = Reassembler()
        infos = concat_infos(seg.parts, 5)
        assert reassembler.add("m", infos[1], seg.payloads[1], DC_DEFAULT, T0) is None
        assert len(reassembler) == 1
        whole = reassembler.add("m", infos[0], seg.payloads[0], DC_DEFAULT, T0)
        assert whole is not None
        assert whole.text == "x" * 300 + "€"
        assert whole.parts == 2
        assert len(reassembler) == 0

    def test_duplicate_part_keeps_first_copy(self) -> None:
        reassembler = Reassembler()
        assert reassembler.add("m", ConcatInfo(1, 2, 1), b"ab", DC_DEFAULT, T0) is None
        assert reassembler.add("m", ConcatInfo(1, 2, 1), b"zz", DC_DEFAULT, T0) is None
        whole = reassembler.add("m", ConcatInfo(1, 2, 2), b"cd", DC_DEFAULT, T0)
        assert whole is not None
        assert whole.text == "abcd"

    def test_sources_do_not_mix(self) -> None:
        reassembler = Reassembler()
        assert reassembler.add("a", ConcatInfo(1, 2, 1), b"A", DC_DEFAULT, T0) is None
        assert reassembler.add("b", ConcatInfo(1, 2, 2), b"B", DC_DEFAULT, T0) is None
        assert sorted(reassembler.pending()) == [("a", 1), ("b", 1)]

    def test_reused_reference_with_other_total_restarts(self) -> None:
        reassembler = Reassembler()
        assert reassembler.add("m", ConcatInfo(1, 3, 1), b"old", DC_DEFAULT, T0) is None
        assert reassembler.add("m", ConcatInfo(1, 2, 1), b"ne", DC_DEFAULT, T0) is None
        whole = reassembler.add("m", ConcatInfo(1, 2, 2), b"w", DC_DEFAULT, T0)
        assert whole is not None
        assert whole.text == "new"

    def test_surrogate_pair_cut_by_sender_still_decodes(self) -> None:
        raw = "😀".encode("utf-16-be")
        reassembler = Reassembler()
        reassembler.add("m", ConcatInfo(1, 2, 1), raw[:2], DC_UCS2, T0)
        whole = reassembler.add("m", ConcatInfo(1, 2, 2), raw[2:], DC_UCS2, T0)
        assert whole is not None
        assert whole.text == "😀"

    def test_binary_parts_join_as_octets(self) -> None:
        reassembler = Reassembler()
        reassembler.add("m", ConcatInfo(1, 2, 1), b"\x01", DC_BINARY, T0)
        whole = reassembler.add("m", ConcatInfo(1, 2, 2), b"\x02", DC_BINARY, T0)
        assert whole is not None
        assert whole.payload == b"\x01\x02"
        assert whole.text == "0102"

    def test_expire_at_the_boundary(self) -> None:
        reassembler = Reassembler()
        reassembler.add("m", ConcatInfo(7, 3, 2), b"b", DC_DEFAULT, T0)
        max_age = timedelta(minutes=10)
        assert reassembler.expire(T0 + max_age, max_age) == []
        expired = reassembler.expire(T0 + max_age + timedelta(microseconds=1), max_age)
        assert [(e.source, e.ref, e.total, e.received) for e in expired] == [("m", 7, 3, (2,))]
        assert len(reassembler) == 0

    @settings(deadline=None)
    @given(
        st.text(max_size=1000),
        st.integers(0, 255),
        st.randoms(use_true_random=False),
        st.sampled_from([Concat.UDH8, Concat.UDH16]),
    )
    def test_shuffled_parts_over_the_wire_yield_the_text(
        self, text: str, ref: int, rnd: random.Random, concat: Concat
    ) -> None:
        seg = segment(text, concat=concat)
        bodies = with_udh(seg, ref, ref_bits=16 if concat is Concat.UDH16 else 8)
        esm_class = ESM_UDHI if seg.parts > 1 else 0
        rnd.shuffle(bodies)
        reassembler = Reassembler()
        texts: list[str] = []
        for body in bodies:
            header, payload = split_short_message(body, esm_class)
            info = header.concat if header is not None else None
            if info is None:
                texts.append(decode(payload, seg.data_coding))
                continue
            whole = reassembler.add("src", info, payload, seg.data_coding, T0)
            if whole is not None:
                texts.append(whole.text)
        assert texts == [text]
        assert len(reassembler) == 0
