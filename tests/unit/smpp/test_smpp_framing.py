"""FrameReader splits any chunking of a byte stream into the same frames."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.smpp.smpp_strategies import any_pdu

from smsgate.smpp import CommandStatus, EnquireLink, FrameReader, Pdu, encode


@settings(max_examples=60, deadline=None)
@given(st.lists(any_pdu, min_size=1, max_size=8), st.data())
def test_any_chunking_yields_the_frames(pdus: list[Pdu], data: st.DataObject) -> None:
    frames = [encode(p) for p in pdus]
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    reader = FrameReader()
    got: list[bytes] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        got += reader.feed(stream[start:cut])
        start = cut
    assert got == frames
    assert reader.buffered == 0
    assert reader.error is None


def test_a_bad_length_stops_the_stream_after_the_good_frames() -> None:
    good = encode(EnquireLink(sequence_number=1))
    bad = struct.pack(">IIII", 8, 0x15, 0, 2)
    reader = FrameReader()
    assert reader.feed(good + bad + good) == [good]
    assert reader.error is not None
    assert reader.error.command_status == CommandStatus.ESME_RINVCMDLEN
    assert reader.error.sequence_number == 2
    assert reader.feed(good) == []


def test_a_frame_above_the_limit_is_refused_before_it_is_buffered() -> None:
    reader = FrameReader(max_frame_size=1024)
    assert reader.feed(struct.pack(">I", 1025)) == []
    assert reader.error is not None
    assert reader.error.sequence_number is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_random_bytes_never_raise(chunks: list[bytes]) -> None:
    reader = FrameReader(max_frame_size=4096)
    for chunk in chunks:
        for frame in reader.feed(chunk):
            assert 16 <= len(frame) <= 4096
            assert struct.unpack(">I", frame[:4])[0] == len(frame)
