"""SMS text: choosing the encoding, counting its length, splitting it into parts, decoding it.

Two encodings are produced (3GPP TS 23.038):
- GSM 7-bit default alphabet with its extension table (``Encoding.GSM7``, SMPP data_coding 0).
  Extension characters (``€ [ ] { } ^ ~ | \\`` and form feed) are an escape 0x1B plus a code,
  so they take two septets. Payloads are unpacked, one septet per octet, which is how SMPP
  carries data_coding 0; ``pack_septets`` / ``unpack_septets`` do the air-interface packing.
- UCS-2 (``Encoding.UCS2``, data_coding 8) written as UTF-16-BE: a character outside the BMP
  takes a surrogate pair, two units.

GSM7 is chosen when every character fits, else UCS2. The character tables come from the
``gsm0338`` codec; ESC (U+001B) itself is not accepted as text because on the air it would
start an escape sequence.

Lengths are in septets (GSM7) or 16-bit units (UCS2). One part carries 160 septets / 70 units;
parts of a concatenated message carry 153 / 67 (8-bit reference UDH or SAR TLVs) or 152 / 66
(16-bit reference UDH). A part boundary never splits an escape sequence or a surrogate pair.
Concatenation headers and reassembly live in ``smsgate.domain.concat``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import gsm0338

from smsgate.domain.errors import TextTooLong, UnencodableText

__all__ = [
    "DC_BINARY",
    "DC_DEFAULT",
    "DC_IA5",
    "DC_LATIN1",
    "DC_UCS2",
    "MAX_PARTS",
    "Alphabet",
    "Concat",
    "Encoding",
    "Segment",
    "Segmentation",
    "alphabet_of",
    "choose_encoding",
    "count_parts",
    "decode",
    "decode_gsm7",
    "encode",
    "is_gsm7",
    "pack_septets",
    "part_limit",
    "segment",
    "text_length",
    "udh_fill_bits",
    "unpack_septets",
]

GSM_CODEC: Final[str] = gsm0338.Codec.NAME  # "gsm03.38"; importing gsm0338 registers it
_ESC: Final = 0x1B
_REPLACEMENT: Final = "\ufffd"

# SMPP 3.4 §5.2.19 data_coding values the gateway produces or commonly meets.
DC_DEFAULT: Final = 0x00  # "SMSC default alphabet"; we treat it as GSM 03.38, unpacked
DC_IA5: Final = 0x01
DC_BINARY_2: Final = 0x02
DC_LATIN1: Final = 0x03
DC_BINARY: Final = 0x04
DC_CYRILLIC: Final = 0x06  # ISO-8859-5
DC_HEBREW: Final = 0x07  # ISO-8859-8
DC_UCS2: Final = 0x08

# The UDH carries the part count in one octet (3GPP TS 23.040 §9.2.3.24.1).
MAX_PARTS: Final = 255


class Encoding(StrEnum):
    """What the gateway sends; the values are what mt_messages.encoding stores."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"

    @property
    def data_coding(self) -> int:
        return DC_DEFAULT if self is Encoding.GSM7 else DC_UCS2


class Concat(StrEnum):
    """How the parts of a long message are tied together on the link."""

    UDH8 = "udh8"  # UDH IE 0x00, 8-bit reference: 6 octets of header
    UDH16 = "udh16"  # UDH IE 0x08, 16-bit reference: 7 octets of header
    SAR = "sar"  # SMPP 3.4 §5.3.2.22-24 TLVs; the SMSC adds the UDH, so keep room for it


_SINGLE_LIMIT: Final = {Encoding.GSM7: 160, Encoding.UCS2: 70}
_MULTI_LIMIT: Final = {
    (Encoding.GSM7, Concat.UDH8): 153,
    (Encoding.GSM7, Concat.SAR): 153,
    (Encoding.GSM7, Concat.UDH16): 152,
    (Encoding.UCS2, Concat.UDH8): 67,
    (Encoding.UCS2, Concat.SAR): 67,
    (Encoding.UCS2, Concat.UDH16): 66,
}


def part_limit(encoding: Encoding, *, multipart: bool, concat: Concat = Concat.UDH8) -> int:
    """Septets (GSM7) or units (UCS2) that one part carries."""
    if not multipart:
        return _SINGLE_LIMIT[encoding]
    return _MULTI_LIMIT[(encoding, concat)]


def _gsm_tables() -> tuple[dict[int, str], dict[int, str], dict[str, int]]:
    """Basic and extension tables as the gsm0338 codec defines them, plus septets per char."""
    basic: dict[int, str] = {}
    extension: dict[int, str] = {}
    for code in range(0x80):
        if code != _ESC:
            basic[code] = bytes([code]).decode(GSM_CODEC)
        try:
            extension[code] = bytes([_ESC, code]).decode(GSM_CODEC)
        except UnicodeDecodeError:
            continue
    cost = {char: 1 for char in basic.values()}
    for char in extension.values():
        cost.setdefault(char, 2)
    return basic, extension, cost


_GSM_BASIC, _GSM_EXTENSION, _GSM_SEPTETS = _gsm_tables()
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    # A Python str can hold a lone surrogate (e.g. from a JSON "\ud800"); UTF-16 cannot.
    return _LONE_SURROGATE.sub(_REPLACEMENT, text)


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM 03.38 default alphabet or its extension."""
    septets = _GSM_SEPTETS
    return all(char in septets for char in text)


def choose_encoding(text: str) -> Encoding:
    return Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2


def _char_cost(char: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        return _GSM_SEPTETS[char]
    return 2 if ord(char) > 0xFFFF else 1


def text_length(text: str, encoding: Encoding | None = None) -> int:
    """Length in septets (GSM7) or UTF-16 units (UCS2); the encoding defaults to the chosen one."""
    text = _clean(text)
    encoding = encoding or choose_encoding(text)
    _require_encodable(text, encoding)
    if encoding is Encoding.GSM7:
        return sum(_GSM_SEPTETS[char] for char in text)
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _require_encodable(text: str, encoding: Encoding) -> None:
    if encoding is Encoding.GSM7:
        for position, char in enumerate(text):
            if char not in _GSM_SEPTETS:
                raise UnencodableText(
                    f"character {char!r} at position {position} is not in GSM 03.38"
                )


def encode(text: str, encoding: Encoding) -> bytes:
    """GSM7: unpacked septets with escapes; UCS2: UTF-16-BE."""
    text = _clean(text)
    _require_encodable(text, encoding)
    if encoding is Encoding.GSM7:
        return text.encode(GSM_CODEC)
    return text.encode("utf-16-be")


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    payload: bytes  # unpacked septets (GSM7) or UTF-16-BE (UCS2), without any UDH
    length: int  # septets or units


@dataclass(frozen=True, slots=True)
class Segmentation:
    encoding: Encoding
    concat: Concat
    length: int  # of the whole text, septets or units
    segments: tuple[Segment, ...]

    @property
    def parts(self) -> int:
        return len(self.segments)

    @property
    def data_coding(self) -> int:
        return self.encoding.data_coding

    @property
    def payloads(self) -> list[bytes]:
        return [seg.payload for seg in self.segments]


def segment(
    text: str,
    *,
    encoding: Encoding | None = None,
    concat: Concat = Concat.UDH8,
    max_parts: int = MAX_PARTS,
) -> Segmentation:
    """Split text into SMS parts; raises TextTooLong past max_parts (never more than 255).

    The empty text is one empty part. A forced GSM7 encoding raises UnencodableText when a
    character does not fit.
    """
    text = _clean(text)
    chosen = encoding or choose_encoding(text)
    _require_encodable(text, chosen)
    costs = [_char_cost(char, chosen) for char in text]
    total = sum(costs)
    if total <= _SINGLE_LIMIT[chosen]:
        chunks = [(text, total)]
    else:
        chunks = _split(text, costs, _MULTI_LIMIT[(chosen, concat)])
    limit = min(max_parts, MAX_PARTS)
    if len(chunks) > limit:
        raise TextTooLong(
            f"text needs {len(chunks)} parts, at most {limit} allowed",
            parts=len(chunks),
            max_parts=limit,
        )
    segments = tuple(
        Segment(text=chunk, payload=encode(chunk, chosen), length=length)
        for chunk, length in chunks
    )
    return Segmentation(encoding=chosen, concat=concat, length=total, segments=segments)


def _split(text: str, costs: list[int], limit: int) -> list[tuple[str, int]]:
    # Cutting only between characters keeps an escape sequence (one char, two septets) and
    # a surrogate pair (one code point, two units) whole.
    chunks: list[tuple[str, int]] = []
    start = 0
    used = 0
    for index, cost in enumerate(costs):
        if used + cost > limit:
            chunks.append((text[start:index], used))
            start, used = index, 0
        used += cost
    chunks.append((text[start:], used))
    return chunks


def count_parts(
    text: str, *, encoding: Encoding | None = None, concat: Concat = Concat.UDH8
) -> int:
    """Parts the text needs (what a message is priced by); unbounded, never raises TextTooLong."""
    text = _clean(text)
    chosen = encoding or choose_encoding(text)
    _require_encodable(text, chosen)
    costs = [_char_cost(char, chosen) for char in text]
    if sum(costs) <= _SINGLE_LIMIT[chosen]:
        return 1
    return len(_split(text, costs, _MULTI_LIMIT[(chosen, concat)]))


# -- decoding ------------------------------------------------------------------------------


class Alphabet(StrEnum):
    """How the octets of a received short_message are to be read."""

    GSM7 = "gsm7"
    ASCII = "ascii"
    LATIN1 = "latin1"
    CYRILLIC = "cyrillic"
    HEBREW = "hebrew"
    UCS2 = "ucs2"
    BINARY = "binary"


_SMPP_ALPHABETS: Final = {
    DC_IA5: Alphabet.ASCII,
    DC_BINARY_2: Alphabet.BINARY,
    DC_LATIN1: Alphabet.LATIN1,
    DC_BINARY: Alphabet.BINARY,
    DC_CYRILLIC: Alphabet.CYRILLIC,
    DC_HEBREW: Alphabet.HEBREW,
    DC_UCS2: Alphabet.UCS2,
}
_DCS_GENERAL_ALPHABETS: Final = (Alphabet.GSM7, Alphabet.BINARY, Alphabet.UCS2, Alphabet.BINARY)


def alphabet_of(data_coding: int, *, default: Alphabet = Alphabet.GSM7) -> Alphabet:
    """The alphabet a data_coding names (SMPP 3.4 §5.2.19, then 3GPP TS 23.038 §4 groups).

    ``default`` is what the SMSC means by data_coding 0, its "default alphabet": GSM 03.38
    for most, ASCII or Latin-1 for some (a per-link setting).
    """
    if data_coding == DC_DEFAULT:
        return default
    if data_coding in _SMPP_ALPHABETS:
        return _SMPP_ALPHABETS[data_coding]
    if 0x10 <= data_coding <= 0x1F:
        # TS 23.038 general data coding with a message class: bits 3..2 name the alphabet.
        return _DCS_GENERAL_ALPHABETS[(data_coding >> 2) & 0x03]
    if 0xC0 <= data_coding <= 0xDF:
        return Alphabet.GSM7  # message waiting indication groups, GSM 7-bit text
    if 0xE0 <= data_coding <= 0xEF:
        return Alphabet.UCS2  # message waiting indication group, UCS2 text
    if 0xF0 <= data_coding <= 0xFF:
        # Data coding / message class group: bit 2 set means 8-bit data.
        return Alphabet.BINARY if data_coding & 0x04 else Alphabet.GSM7
    return Alphabet.BINARY  # JIS, pictograms, compressed text, reserved: keep the octets


def decode_gsm7(septets: bytes) -> str:
    """Read unpacked GSM 03.38 septets, leniently (a received message is never refused).

    TS 23.038 §6.2.1.1: an escape followed by a code the extension table does not define
    shows the basic-table character; ESC ESC is reserved and shows a space. A trailing ESC is
    dropped and an octet above 0x7F (not a septet) becomes U+FFFD.
    """
    out: list[str] = []
    index = 0
    length = len(septets)
    while index < length:
        code = septets[index]
        index += 1
        if code != _ESC:
            out.append(_GSM_BASIC.get(code, _REPLACEMENT))
            continue
        if index == length:
            break
        code = septets[index]
        index += 1
        if code == _ESC:
            out.append(" ")
        else:
            out.append(_GSM_EXTENSION.get(code) or _GSM_BASIC.get(code, _REPLACEMENT))
    return "".join(out)


def decode(payload: bytes, data_coding: int, *, default_alphabet: Alphabet = Alphabet.GSM7) -> str:
    """Text of a received short_message (without its UDH). Binary payloads come back as hex."""
    alphabet = alphabet_of(data_coding, default=default_alphabet)
    if alphabet is Alphabet.GSM7:
        return decode_gsm7(payload)
    if alphabet is Alphabet.UCS2:
        return payload.decode("utf-16-be", errors="replace")
    if alphabet is Alphabet.BINARY:
        return payload.hex()
    codec = {
        Alphabet.ASCII: "ascii",
        Alphabet.LATIN1: "latin-1",
        Alphabet.CYRILLIC: "iso8859-5",
        Alphabet.HEBREW: "iso8859-8",
    }[alphabet]
    return payload.decode(codec, errors="replace")


# -- 7-bit packing (TS 23.038 §6.1.2.1) --------------------------------------------------------


def udh_fill_bits(udh_octets: int) -> int:
    """Fill bits after a UDH of that many octets so the first septet starts on a septet
    boundary (TS 23.040 §9.2.3.24)."""
    return (7 - (udh_octets * 8) % 7) % 7


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets LSB first, after ``fill_bits`` zero bits."""
    if not 0 <= fill_bits <= 6:
        raise ValueError("fill_bits must be 0..6")
    accumulator = 0
    bits = fill_bits
    out = bytearray()
    for septet in septets:
        accumulator |= (septet & 0x7F) << bits
        bits += 7
        while bits >= 8:
            out.append(accumulator & 0xFF)
            accumulator >>= 8
            bits -= 8
    if bits > 0:
        out.append(accumulator & 0xFF)
    return bytes(out)


def unpack_septets(data: bytes, count: int | None = None, fill_bits: int = 0) -> bytes:
    """Unpack septets. Without ``count``, every whole septet is returned; note that 7 septets
    and 8 septets whose last is '@' (0x00) pack to the same 7 octets, so pass the count
    (the TP-UDL) when it is known."""
    if not 0 <= fill_bits <= 6:
        raise ValueError("fill_bits must be 0..6")
    available = (len(data) * 8 - fill_bits) // 7
    wanted = available if count is None else min(count, available)
    value = int.from_bytes(data, "little") >> fill_bits
    return bytes((value >> (7 * index)) & 0x7F for index in range(wanted))
