"""SMS text encoding, length and segmenting: examples at the limits, then properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgate.domain.errors import TextTooLong, UnencodableText
from smsgate.domain.text import (
    DC_BINARY,
    DC_DEFAULT,
    DC_LATIN1,
    DC_UCS2,
    Alphabet,
    Concat,
    Encoding,
    alphabet_of,
    choose_encoding,
    count_parts,
    decode,
    decode_gsm7,
    encode,
    is_gsm7,
    pack_septets,
    part_limit,
    segment,
    text_length,
    udh_fill_bits,
    unpack_septets,
)

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "\f^{}\\[~]|€"

gsm_text = st.text(alphabet=st.sampled_from(GSM_BASIC + GSM_EXTENSION), max_size=700)
any_text = st.text(max_size=700)
mixed_text = st.one_of(
    gsm_text,
    any_text,
    st.text(alphabet=st.sampled_from("аб€{😀𝄞x "), max_size=400),
)


def _escapes_complete(payload: bytes) -> bool:
    """Every escape octet is followed by its code inside the same payload."""
    index = 0
    while index < len(payload):
        if payload[index] == 0x1B:
            if index + 1 >= len(payload):
                return False
            index += 1
        index += 1
    return True


class TestChooseEncoding:
    def test_latin_text_is_gsm7(self) -> None:
        assert choose_encoding("Your code: AB12") is Encoding.GSM7

    def test_extension_characters_stay_gsm7(self) -> None:
        assert choose_encoding("price 5€ {x} [y] ~|^\\") is Encoding.GSM7

    def test_cyrillic_needs_ucs2(self) -> None:
        assert choose_encoding("Вашият код: 1234") is Encoding.UCS2

    def test_escape_character_itself_is_not_gsm7(self) -> None:
        # U+001B would start an escape sequence on the air.
        assert not is_gsm7("a\x1bb")
        assert choose_encoding("a\x1bb") is Encoding.UCS2

    def test_lowercase_c_cedilla_is_not_in_default_alphabet(self) -> None:
        assert is_gsm7("Ç")
        assert not is_gsm7("ç")

    def test_data_coding_follows_encoding(self) -> None:
        assert Encoding.GSM7.data_coding == DC_DEFAULT
        assert Encoding.UCS2.data_coding == DC_UCS2


class TestLength:
    def test_extension_characters_count_two_septets(self) -> None:
        assert text_length("€") == 2
        assert text_length("a{b}") == 6

    def test_non_bmp_character_counts_two_units(self) -> None:
        assert text_length("😀") == 2
        assert text_length("я😀") == 3

    def test_forced_gsm7_refuses_cyrillic(self) -> None:
        with pytest.raises(UnencodableText):
            text_length("я", Encoding.GSM7)

    def test_forced_ucs2_counts_units(self) -> None:
        assert text_length("€{", Encoding.UCS2) == 2


class TestSegmentLimits:
    @pytest.mark.parametrize(
        ("text", "parts"),
        [
            ("a" * 160, 1),
            ("a" * 161, 2),
            ("a" * 306, 2),
            ("a" * 307, 3),
            ("€" * 80, 1),  # 160 septets
            ("€" * 81, 2),
            ("€" * 153, 3),  # 306 septets would fit 2 x 153, but 76 escapes (152) per part
            ("ж" * 70, 1),
            ("ж" * 71, 2),
            ("ж" * 134, 2),
            ("ж" * 135, 3),
            ("😀" * 35, 1),
            ("😀" * 36, 2),
            ("😀" * 67, 3),  # 134 units would fit 2 x 67, but a pair cannot straddle: 33 a part
        ],
    )
    def test_part_counts_at_the_limits(self, text: str, parts: int) -> None:
        assert segment(text).parts == parts
        assert count_parts(text) == parts

    def test_escape_at_boundary_moves_to_next_part(self) -> None:
        text = "a" * 152 + "€" + "b" * 10
        seg = segment(text)
        assert seg.segments[0].text == "a" * 152
        assert seg.segments[0].length == 152
        assert seg.segments[1].text.startswith("€")

    def test_sixteen_bit_reference_leaves_less_room(self) -> None:
        assert segment("a" * 306, concat=Concat.UDH16).parts == 3
        assert [s.length for s in segment("a" * 304, concat=Concat.UDH16).segments] == [152, 152]

    def test_sar_uses_the_same_room_as_udh8(self) -> None:
        assert part_limit(Encoding.GSM7, multipart=True, concat=Concat.SAR) == 153
        assert part_limit(Encoding.UCS2, multipart=True, concat=Concat.SAR) == 67

    def test_empty_text_is_one_empty_part(self) -> None:
        seg = segment("")
        assert seg.parts == 1
        assert seg.payloads == [b""]
        assert seg.encoding is Encoding.GSM7

    def test_max_parts_is_enforced(self) -> None:
        with pytest.raises(TextTooLong) as caught:
            segment("a" * 500, max_parts=3)
        assert caught.value.parts == 4
        assert caught.value.max_parts == 3

    def test_never_more_than_255_parts(self) -> None:
        with pytest.raises(TextTooLong):
            segment("a" * (153 * 255 + 1), max_parts=1000)
        assert segment("a" * (153 * 255)).parts == 255

    def test_gsm7_payload_is_unpacked_septets_with_escapes(self) -> None:
        assert segment("A€").payloads == [b"\x41\x1b\x65"]

    def test_ucs2_payload_is_utf16_be(self) -> None:
        assert segment("ж😀").payloads == ["ж😀".encode("utf-16-be")]

    def test_lone_surrogate_is_replaced_not_crashing(self) -> None:
        seg = segment("a\ud800b")
        assert seg.encoding is Encoding.UCS2
        assert decode(seg.payloads[0], DC_UCS2) == "a\ufffdb"

    def test_forced_gsm7_raises_for_unencodable(self) -> None:
        with pytest.raises(UnencodableText):
            segment("Привет", encoding=Encoding.GSM7)


class TestDecode:
    def test_gsm_default(self) -> None:
        assert decode(b"\x48\x69\x1b\x65\x00", DC_DEFAULT) == "Hi€@"

    def test_unknown_escape_shows_basic_character(self) -> None:
        assert decode_gsm7(b"\x1b\x41") == "A"

    def test_double_escape_shows_space(self) -> None:
        assert decode_gsm7(b"a\x1b\x1bb") == "a b"

    def test_trailing_escape_is_dropped(self) -> None:
        assert decode_gsm7(b"ab\x1b") == "ab"

    def test_octet_above_0x7f_is_replaced(self) -> None:
        assert decode_gsm7(b"a\xe9") == "a\ufffd"

    def test_latin1(self) -> None:
        assert decode("café".encode("latin-1"), DC_LATIN1) == "café"

    def test_ucs2(self) -> None:
        assert decode("Код 😀".encode("utf-16-be"), DC_UCS2) == "Код 😀"

    def test_binary_is_hex(self) -> None:
        assert decode(b"\x01\xff", DC_BINARY) == "01ff"

    def test_smsc_default_alphabet_can_be_latin1(self) -> None:
        assert decode(b"caf\xe9", DC_DEFAULT, default_alphabet=Alphabet.LATIN1) == "café"

    @pytest.mark.parametrize(
        ("data_coding", "alphabet"),
        [
            (0x00, Alphabet.GSM7),
            (0x01, Alphabet.ASCII),
            (0x02, Alphabet.BINARY),
            (0x03, Alphabet.LATIN1),
            (0x04, Alphabet.BINARY),
            (0x06, Alphabet.CYRILLIC),
            (0x08, Alphabet.UCS2),
            (0x05, Alphabet.BINARY),
            (0x11, Alphabet.GSM7),
            (0x15, Alphabet.BINARY),
            (0x18, Alphabet.UCS2),
            (0xC8, Alphabet.GSM7),
            (0xE0, Alphabet.UCS2),
            (0xF0, Alphabet.GSM7),
            (0xF4, Alphabet.BINARY),
        ],
    )
    def test_alphabet_of_data_coding(self, data_coding: int, alphabet: Alphabet) -> None:
        assert alphabet_of(data_coding) is alphabet


class TestPacking:
    def test_known_packing(self) -> None:
        # TS 23.038 example: "hellohello" packs to E8329BFD4697D9EC37.
        assert pack_septets(encode("hellohello", Encoding.GSM7)).hex().upper() == (
            "E8329BFD4697D9EC37"
        )

    def test_fill_bits_after_udh(self) -> None:
        assert udh_fill_bits(6) == 1
        assert udh_fill_bits(7) == 0

    @settings(deadline=None)
    @given(st.binary(max_size=200).map(lambda b: bytes(x & 0x7F for x in b)), st.integers(0, 6))
    def test_pack_unpack_round_trip(self, septets: bytes, fill: int) -> None:
        packed = pack_septets(septets, fill)
        assert unpack_septets(packed, len(septets), fill) == septets

    def test_fill_bits_out_of_range(self) -> None:
        with pytest.raises(ValueError, match="fill_bits"):
            pack_septets(b"a", 7)


class TestProperties:
    @settings(deadline=None)
    @given(mixed_text, st.sampled_from(list(Concat)))
    def test_segments_join_back_to_text(self, text: str, concat: Concat) -> None:
        seg = segment(text, concat=concat)
        assert "".join(s.text for s in seg.segments) == text
        decoded = "".join(decode(p, seg.data_coding) for p in seg.payloads)
        assert decoded == text

    @settings(deadline=None)
    @given(mixed_text, st.sampled_from(list(Concat)))
    def test_no_segment_exceeds_its_limit(self, text: str, concat: Concat) -> None:
        seg = segment(text, concat=concat)
        limit = part_limit(seg.encoding, multipart=seg.parts > 1, concat=concat)
        for part in seg.segments:
            assert part.length <= limit
            assert text_length(part.text, seg.encoding) == part.length
        assert sum(p.length for p in seg.segments) == seg.length == text_length(text)

    @settings(deadline=None)
    @given(mixed_text)
    def test_escapes_and_surrogate_pairs_are_never_split(self, text: str) -> None:
        seg = segment(text)
        for part in seg.segments:
            if seg.encoding is Encoding.GSM7:
                assert _escapes_complete(part.payload)
                assert decode_gsm7(part.payload) == part.text
            else:
                units = part.payload
                assert len(units) % 2 == 0
                if units:
                    last = int.from_bytes(units[-2:], "big")
                    assert not 0xD800 <= last <= 0xDBFF
                    first = int.from_bytes(units[:2], "big")
                    assert not 0xDC00 <= first <= 0xDFFF

    @settings(deadline=None)
    @given(mixed_text)
    def test_parts_are_as_full_as_possible(self, text: str) -> None:
        # Greedy filling: the next part's first character would not have fitted.
        seg = segment(text)
        if seg.parts > 1:
            limit = part_limit(seg.encoding, multipart=True)
            for current, following in zip(seg.segments, seg.segments[1:], strict=False):
                head = text_length(following.text[0], seg.encoding)
                assert current.length + head > limit

    @settings(deadline=None)
    @given(gsm_text)
    def test_gsm_text_is_never_ucs2(self, text: str) -> None:
        assert segment(text).encoding is Encoding.GSM7
