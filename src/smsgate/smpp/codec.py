"""SMPP 3.4 wire format: ``encode(pdu) -> bytes`` and ``decode(frame) -> Pdu``.

Each operation's body (``layouts.BODIES``) is compiled at import time into one straight-line
encoder and one decoder function, the way ``dataclasses`` builds ``__init__``: runs of
fixed-size integers become a single ``struct`` call, C-Octet strings a ``find`` and a slice,
and there is no per-field dispatch left at run time. Generated source is kept in
``GENERATED_SOURCE`` for reading and debugging.

Decoding is strict, and every failure is a :class:`PduError` carrying the command_status
to answer with (and the sequence number once the header could be read): a wrong
command_length, a field running past the end, a C-Octet string without its terminator or
longer than its maximum, an unknown command_id, octets left over.
"""

from __future__ import annotations

import struct
from dataclasses import MISSING, fields
from typing import Any, Final, NamedTuple

from .constants import HEADER_SIZE, CommandStatus, DestFlag
from .errors import PduEncodeError, PduError
from .framing import DEFAULT_MAX_FRAME_SIZE, FrameReader
from .layouts import (
    BODIES,
    NO_BODY_ON_ERROR,
    Body,
    CStr,
    DestList,
    Int,
    OptionalParams,
    ShortMessage,
    Time,
    UnsuccessList,
)
from .pdu import NO_TLVS, DistributionList, Pdu, Response, SmeAddress, UnsuccessSme
from .tlv import decode_tlvs, encode_tlvs

S = CommandStatus
_HEADER = struct.Struct(">IIII")
_U32 = struct.Struct(">I")

# --- errors raised by generated code -------------------------------------------------------


def _truncated(name: str) -> PduError:
    return PduError(S.ESME_RINVCMDLEN, f"{name} runs past the end of the PDU")


def _bad_cstring(name: str, max_size: int, status: int, room: bool) -> PduError:
    if room:  # max_size octets were there and none was the NUL
        return PduError(status, f"{name} longer than {max_size - 1} characters")
    return PduError(S.ESME_RINVCMDLEN, f"{name} has no terminating NUL")


def _bad_time(name: str, status: int) -> PduError:
    return PduError(status, f"{name} must be empty or 16 characters")


def _bad_sm_length(length: int) -> PduError:
    # SMPP 3.4 §5.2.21: sm_length is 0 to 254 and must fit in the PDU
    return PduError(S.ESME_RINVMSGLEN, f"sm_length {length} does not fit")


def _left_over(count: int) -> PduError:
    return PduError(S.ESME_RINVCMDLEN, f"{count} octets after the body")


def _encode_error(name: str, value: object, max_size: int) -> PduEncodeError:
    return PduEncodeError(f"{name}: {value!r} is longer than {max_size - 1} or has a NUL")


def _bad_time_value(name: str, value: object) -> PduEncodeError:
    return PduEncodeError(f"{name}: {value!r} must be empty or 16 characters")


def _too_long_sm(length: int) -> PduEncodeError:
    return PduEncodeError(f"short_message of {length} octets; above 254 use message_payload")


# --- submit_multi lists ----------------------------------------------------------------------


def _read_address(buf: bytes, pos: int, end: int, name: str, status: int) -> tuple[str, int]:
    limit = pos + 21
    nul = buf.find(0, pos, limit if limit < end else end)
    if nul < 0:
        raise _bad_cstring(name, 21, status, limit <= end)
    return buf[pos:nul].decode("latin-1"), nul + 1


def _decode_dest_list(
    buf: bytes, pos: int, end: int
) -> tuple[tuple[SmeAddress | DistributionList, ...], int]:
    if pos >= end:
        raise _truncated("number_of_dests")
    count = buf[pos]
    pos += 1
    dests: list[SmeAddress | DistributionList] = []
    for _ in range(count):
        if pos >= end:
            raise _truncated("dest_flag")
        flag = buf[pos]
        if flag == DestFlag.SME_ADDRESS:
            if pos + 3 > end:
                raise _truncated("dest_address")
            ton, npi = buf[pos + 1], buf[pos + 2]
            address, pos = _read_address(buf, pos + 3, end, "destination_addr", S.ESME_RINVDSTADR)
            dests.append(SmeAddress(ton, npi, address))
        elif flag == DestFlag.DISTRIBUTION_LIST:
            name, pos = _read_address(buf, pos + 1, end, "dl_name", S.ESME_RINVDLNAME)
            dests.append(DistributionList(name))
        else:
            raise PduError(S.ESME_RINVDESTFLAG, f"dest_flag {flag}")
    return tuple(dests), pos


def _encode_dest_list(dests: tuple[SmeAddress | DistributionList, ...], parts: list[bytes]) -> None:
    if len(dests) > 254:  # SMPP 3.4 §4.5.1: at most 254 destinations
        raise PduEncodeError(f"{len(dests)} destinations, more than 254")
    parts.append(bytes((len(dests),)))
    for dest in dests:
        if isinstance(dest, SmeAddress):
            parts.append(bytes((DestFlag.SME_ADDRESS, dest.ton, dest.npi)))
            parts.append(_address(dest.address, "destination_addr"))
        else:
            parts.append(bytes((DestFlag.DISTRIBUTION_LIST,)))
            parts.append(_address(dest.name, "dl_name"))


def _decode_unsuccess_list(buf: bytes, pos: int, end: int) -> tuple[tuple[UnsuccessSme, ...], int]:
    if pos >= end:
        raise _truncated("no_unsuccess")
    count = buf[pos]
    pos += 1
    smes: list[UnsuccessSme] = []
    for _ in range(count):
        if pos + 2 > end:
            raise _truncated("unsuccess_sme")
        ton, npi = buf[pos], buf[pos + 1]
        address, pos = _read_address(buf, pos + 2, end, "destination_addr", S.ESME_RINVDSTADR)
        if pos + 4 > end:
            raise _truncated("error_status_code")
        (error_status,) = _U32.unpack_from(buf, pos)
        pos += 4
        smes.append(UnsuccessSme(ton, npi, address, error_status))
    return tuple(smes), pos


def _encode_unsuccess_list(smes: tuple[UnsuccessSme, ...], parts: list[bytes]) -> None:
    if len(smes) > 255:
        raise PduEncodeError(f"{len(smes)} unsuccessful destinations, more than 255")
    parts.append(bytes((len(smes),)))
    for sme in smes:
        parts.append(bytes((sme.ton, sme.npi)))
        parts.append(_address(sme.address, "destination_addr"))
        parts.append(_U32.pack(sme.error_status_code))


def _address(value: str, name: str) -> bytes:
    raw = value.encode("latin-1")
    if len(raw) >= 21 or 0 in raw:
        raise _encode_error(name, value, 21)
    return raw + b"\0"


# --- code generation -----------------------------------------------------------------------


class _Generated(NamedTuple):
    decoder: Any  # (buf, pos, end, sequence, status) -> Pdu
    encoder: Any  # (pdu, parts) -> None


GENERATED_SOURCE: Final[dict[str, str]] = {}


def _generate(cls: type[Pdu], body: Body) -> _Generated:
    namespace: dict[str, Any] = {
        "cls": cls,
        "PduError": PduError,
        "_truncated": _truncated,
        "_bad_cstring": _bad_cstring,
        "_bad_time": _bad_time,
        "_bad_sm_length": _bad_sm_length,
        "_left_over": _left_over,
        "_encode_error": _encode_error,
        "_bad_time_value": _bad_time_value,
        "_too_long_sm": _too_long_sm,
        "_decode_dest_list": _decode_dest_list,
        "_encode_dest_list": _encode_dest_list,
        "_decode_unsuccess_list": _decode_unsuccess_list,
        "_encode_unsuccess_list": _encode_unsuccess_list,
        "decode_tlvs": decode_tlvs,
        "encode_tlvs": encode_tlvs,
        "NO_TLVS": NO_TLVS,
    }
    dec = ["def decode_body(buf, pos, end, sequence, status):"]
    enc = ["def encode_body(pdu, parts):", "    append = parts.append"]
    names = [name for name, _ in body]
    index = 0
    while index < len(body):
        name, kind = body[index]
        if isinstance(kind, Int):
            run = [body[index]]
            while index + 1 < len(body) and isinstance(body[index + 1][1], Int):
                index += 1
                run.append(body[index])
            packer = struct.Struct(">" + "".join(k.fmt for _, k in run if isinstance(k, Int)))
            struct_name = f"_struct{index}"
            namespace[struct_name] = packer
            run_names = [n for n, _ in run]
            dec += [
                f"    if pos + {packer.size} > end: raise _truncated({run_names[0]!r})",
                f"    {', '.join(run_names)}, = {struct_name}.unpack_from(buf, pos)",
                f"    pos += {packer.size}",
            ]
            enc.append(
                f"    append({struct_name}.pack({', '.join('pdu.' + n for n in run_names)}))"
            )
        elif isinstance(kind, CStr | Time):
            max_size, status = (
                (kind.max_size, kind.status) if isinstance(kind, CStr) else (17, kind.status)
            )
            dec += [
                f"    limit = pos + {max_size}",
                "    nul = buf.find(0, pos, limit if limit < end else end)",
                f"    if nul < 0: raise _bad_cstring({name!r}, {max_size}, {status}, limit <= end)",
            ]
            enc += [
                f"    raw = pdu.{name}.encode('latin-1')",
                f"    if len(raw) >= {max_size} or 0 in raw:",
                f"        raise _encode_error({name!r}, raw, {max_size})",
            ]
            if isinstance(kind, Time):
                dec.append(
                    f"    if nul != pos and nul - pos != 16: raise _bad_time({name!r}, {status})"
                )
                enc.append(f"    if raw and len(raw) != 16: raise _bad_time_value({name!r}, raw)")
            dec += [f"    {name} = buf[pos:nul].decode('latin-1')", "    pos = nul + 1"]
            enc += ["    append(raw)", "    append(b'\\0')"]
        elif isinstance(kind, ShortMessage):
            dec += [
                "    if pos >= end: raise _truncated('sm_length')",
                "    stop = pos + 1 + buf[pos]",
                "    if buf[pos] > 254 or stop > end: raise _bad_sm_length(buf[pos])",
                f"    {name} = buf[pos + 1:stop]",
                "    pos = stop",
            ]
            enc += [
                f"    raw = pdu.{name}",
                "    if len(raw) > 254: raise _too_long_sm(len(raw))",
                "    append(bytes((len(raw),)))",
                "    append(raw)",
            ]
        elif isinstance(kind, DestList):
            dec.append(f"    {name}, pos = _decode_dest_list(buf, pos, end)")
            enc.append(f"    _encode_dest_list(pdu.{name}, parts)")
        elif isinstance(kind, UnsuccessList):
            dec.append(f"    {name}, pos = _decode_unsuccess_list(buf, pos, end)")
            enc.append(f"    _encode_unsuccess_list(pdu.{name}, parts)")
        else:
            assert isinstance(kind, OptionalParams)
            dec += [f"    {name} = decode_tlvs(buf, pos, end)", "    pos = end"]
            enc += [f"    if pdu.{name} is not NO_TLVS: encode_tlvs(pdu.{name}, parts)"]
        index += 1
    dec.append("    if pos != end: raise _left_over(end - pos)")
    keywords = "".join(f", {n}={n}" for n in names)
    dec.append(f"    return cls(sequence_number=sequence, command_status=status{keywords})")
    if len(enc) == 2:
        enc.append("    pass")
    source = "\n".join(dec) + "\n\n" + "\n".join(enc) + "\n"
    GENERATED_SOURCE[cls.__name__] = source
    # The source is built only from the static layouts above, never from input.
    exec(compile(source, f"<smpp codec {cls.__name__}>", "exec"), namespace)  # noqa: S102
    return _Generated(namespace["decode_body"], namespace["encode_body"])


class _Codec(NamedTuple):
    cls: type[Pdu]
    decode_body: Any
    encode_body: Any
    has_body: bool
    is_response: bool
    omit_body_on_error: bool
    defaults: tuple[tuple[str, object], ...]


def _codec(cls: type[Pdu], body: Body) -> _Codec:
    generated = _generate(cls, body)
    names = {name for name, _ in body}
    defaults = tuple((f.name, f.default) for f in fields(cls) if f.name in names)
    assert all(default is not MISSING for _, default in defaults)
    return _Codec(
        cls,
        generated.decoder,
        generated.encoder,
        bool(body),
        issubclass(cls, Response),
        cls in NO_BODY_ON_ERROR,
        defaults,
    )


_BY_CLASS: dict[type[Pdu], _Codec] = {cls: _codec(cls, body) for cls, body in BODIES.items()}
_BY_ID: dict[int, _Codec] = {codec.cls.command_id: codec for codec in _BY_CLASS.values()}

PDU_CLASSES: Final[dict[int, type[Pdu]]] = {cid: codec.cls for cid, codec in _BY_ID.items()}
"""command_id -> PDU class, for every SMPP 3.4 operation."""

# --- the API -------------------------------------------------------------------------------


def decode_header(frame: bytes) -> tuple[int, int, int, int]:
    """(command_length, command_id, command_status, sequence_number) of a frame."""
    if len(frame) < HEADER_SIZE:
        raise PduError(S.ESME_RINVCMDLEN, f"{len(frame)} octets, shorter than a header")
    length, command_id, status, sequence = _HEADER.unpack_from(frame)
    return length, command_id, status, sequence


def decode(frame: bytes) -> Pdu:
    """Decode exactly one PDU; raise PduError (never anything else) when it is malformed."""
    size = len(frame)
    if size < HEADER_SIZE:
        raise PduError(S.ESME_RINVCMDLEN, f"{size} octets, shorter than a header")
    length, command_id, status, sequence = _HEADER.unpack_from(frame)
    if length != size:
        raise PduError(
            S.ESME_RINVCMDLEN,
            f"command_length {length} but the frame has {size} octets",
            sequence_number=sequence,
            command_id=command_id,
        )
    codec = _BY_ID.get(command_id)
    if codec is None:
        raise PduError(
            S.ESME_RINVCMDID,
            f"unknown command_id 0x{command_id:08X}",
            sequence_number=sequence,
            command_id=command_id,
        )
    if size == HEADER_SIZE and status and codec.is_response:
        # An error response may come without its body (and often does): fields keep
        # their defaults. Everything else must match its layout to the last octet.
        return codec.cls(sequence_number=sequence, command_status=status)
    try:
        pdu: Pdu = codec.decode_body(frame, HEADER_SIZE, size, sequence, status)
    except PduError as error:
        error.sequence_number = sequence
        error.command_id = command_id
        raise
    return pdu


def encode(pdu: Pdu) -> bytes:
    """The wire form of ``pdu``; raise PduEncodeError when a field cannot be encoded."""
    codec = _BY_CLASS.get(type(pdu))
    if codec is None:
        raise PduEncodeError(f"not an SMPP PDU: {type(pdu).__name__}")
    try:
        if codec.has_body and not (
            pdu.command_status and codec.omit_body_on_error and _has_default_body(pdu, codec)
        ):
            parts: list[bytes] = []
            codec.encode_body(pdu, parts)
            body = b"".join(parts)
        else:
            body = b""
        header = _HEADER.pack(
            HEADER_SIZE + len(body), codec.cls.command_id, pdu.command_status, pdu.sequence_number
        )
    except PduEncodeError:
        raise
    except (struct.error, OverflowError, UnicodeEncodeError, TypeError, AttributeError) as exc:
        raise PduEncodeError(f"{type(pdu).__name__}: {exc}") from exc
    return header + body


def _has_default_body(pdu: Pdu, codec: _Codec) -> bool:
    return all(getattr(pdu, name) == default for name, default in codec.defaults)


__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "GENERATED_SOURCE",
    "PDU_CLASSES",
    "FrameReader",
    "decode",
    "decode_header",
    "encode",
]
