"""Splitting a TCP byte stream into SMPP frames by their command_length (SMPP 3.4 §3.2)."""

from __future__ import annotations

import struct
from typing import Final

from .constants import HEADER_SIZE, CommandStatus
from .errors import PduError

DEFAULT_MAX_FRAME_SIZE: Final = 64 * 1024
"""Largest PDU accepted from a peer. message_payload may carry up to 64 KiB; nothing
legitimate comes near the limit, and a bigger length field means a desynchronised stream."""

_HEADER = struct.Struct(">IIII")
_LENGTH = struct.Struct(">I")


class FrameReader:
    """Splits a byte stream into PDU frames.

    ``feed`` returns the frames completed so far. A command_length below 16 or above
    ``max_frame_size`` means the stream cannot be trusted any more: the frames before it
    are returned, ``error`` is set (answer it with generic_nack, then close the connection)
    and nothing more is ever returned.
    """

    __slots__ = ("_buffer", "error", "max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._buffer = b""
        self.max_frame_size = max_frame_size
        self.error: PduError | None = None

    @property
    def buffered(self) -> int:
        """Octets received that do not form a complete frame yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self.error is not None:
            return []
        buf = self._buffer + data if self._buffer else data
        frames: list[bytes] = []
        pos, size = 0, len(buf)
        while size - pos >= 4:
            (length,) = _LENGTH.unpack_from(buf, pos)
            if length < HEADER_SIZE or length > self.max_frame_size:
                self.error = self._bad_length(buf, pos, length)
                self._buffer = b""
                return frames
            stop = pos + length
            if stop > size:
                break
            frames.append(buf[pos:stop])
            pos = stop
        self._buffer = buf[pos:] if pos else buf
        return frames

    def _bad_length(self, buf: bytes, pos: int, length: int) -> PduError:
        sequence = command_id = None
        if len(buf) - pos >= HEADER_SIZE:
            _, command_id, _, sequence = _HEADER.unpack_from(buf, pos)
        return PduError(
            CommandStatus.ESME_RINVCMDLEN,
            f"command_length {length} outside {HEADER_SIZE}..{self.max_frame_size}",
            sequence_number=sequence,
            command_id=command_id,
        )
