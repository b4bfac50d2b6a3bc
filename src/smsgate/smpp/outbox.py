"""What a session writes: everything written in one event-loop pass leaves in one socket write."""

from __future__ import annotations

import asyncio
import socket


class Outbox:
    """Encoded PDUs waiting for the end of the event-loop pass, then written together.

    One write per pass instead of one per PDU saves a system call (and a TCP segment) per
    PDU when a window's worth of requests or a read's worth of answers go out at once.
    """

    __slots__ = ("_flush_scheduled", "_loop", "_out", "_transport", "_writer", "buffer_limit")

    def __init__(self, writer: asyncio.StreamWriter, buffer_limit: int) -> None:
        self._writer = writer
        self._transport = writer.transport
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.buffer_limit = buffer_limit
        _set_nodelay(writer)

    @property
    def waiting(self) -> bool:
        """True while something written has not been handed to the transport yet."""
        return bool(self._out)

    def write(self, data: bytes) -> None:
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Hand what is waiting to the transport now (a closing one drops it)."""
        self._flush_scheduled = False
        if not self._out or self._transport.is_closing():
            self._out.clear()
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._transport.write(data)

    @property
    def over_limit(self) -> bool:
        """True when the socket has more unsent octets than ``buffer_limit``: wait for it."""
        return self._transport.get_write_buffer_size() > self.buffer_limit

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        """Flush what is waiting and close the connection."""
        self.flush()
        self._transport.close()


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    # DESIGN §2.2: Nagle plus delayed ACK costs ~40 ms per PDU round trip.
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
