"""One keep-alive HTTP/1.1 client connection, for callbacks: a request out, its answer in.

httpcore2's HTTP/1.1 connection drives h11, which validates every header of every request
and answer with regular expressions and walks a state machine per event; for a callback
(a small form POST, a short answer) that was most of the worker's CPU per callback
(bench/webhooks.py ``--profile``). The requests here are built by the worker itself
(webhook_sender.build_request: names and values it encoded), so only the answer needs
parsing, and only as much of it as a callback needs: the status, and the body's framing
(``Content-Length``, ``chunked``, or up to the close), read up to a limit.

A connection is reused only when the answer was read to its end, was not ``Connection:
close`` and is HTTP/1.1; anything else unexpected (a malformed status line or header block,
bytes arriving while idle, an answer past the limit) drops the connection.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpcore2

# Past this, a header block is an attack or a broken server, not an answer.
MAX_HEAD_BYTES = 64 * 1024
_READ_BYTES = 64 * 1024


class CallbackConnection:
    """An HTTP/1.1 connection over an httpcore2 network stream (pooled by
    ``safe_transport.CallbackConnections``)."""

    def __init__(self, stream: httpcore2.AsyncNetworkStream, *, keepalive_seconds: float) -> None:
        self._stream = stream
        self._keepalive = keepalive_seconds
        self._buffer = bytearray()
        self._reusable = True
        self._idle_since = time.monotonic()

    def has_expired(self) -> bool:
        """Idle past keep-alive, or the merchant closed it (or sent bytes nobody asked for)."""
        if time.monotonic() - self._idle_since > self._keepalive:
            return True
        return bool(self._buffer) or bool(self._stream.get_extra_info("is_readable"))

    def is_idle(self) -> bool:
        """Whether the last exchange left the connection fit for the next one."""
        return self._reusable

    async def aclose(self) -> None:
        self._reusable = False
        await self._stream.aclose()

    async def exchange(
        self,
        method: bytes,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        content: bytes,
        *,
        limit: int,
    ) -> tuple[int, bytes]:
        """Send one request and read its answer: the status and up to ``limit`` bytes of the
        body. Network and protocol failures raise httpcore2's errors. The caller bounds the
        time (and closes the connection on any error)."""
        self._reusable = False
        head = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
                raise httpcore2.LocalProtocolError("a header holds a line break")
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        head.append(content)
        try:
            await self._stream.write(b"".join(head))
        except OSError as exc:
            raise httpcore2.WriteError(str(exc)) from exc
        while True:
            status, keep_alive, length, chunked = await self._read_head()
            if not 100 <= status < 200 or status == 101:
                break  # 1xx are interim answers (100 Continue): the real one follows
        if method == b"HEAD" or status in (204, 304) or 100 <= status < 200:
            body, complete = b"", True
        elif chunked:
            body, complete = await self._read_chunked(limit)
        elif length is not None:
            body, complete = await self._read_length(length, limit)
        else:
            body, complete = await self._read_to_close(limit)
            keep_alive = False
        self._reusable = keep_alive and complete and not self._buffer
        self._idle_since = time.monotonic()
        return status, body

    # --- reading ---------------------------------------------------------------------------

    async def _fill(self) -> None:
        data = await self._stream.read(_READ_BYTES)
        if not data:
            raise httpcore2.RemoteProtocolError("the server closed the connection mid-answer")
        self._buffer += data

    async def _read_head(self) -> tuple[int, bool, int | None, bool]:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise httpcore2.RemoteProtocolError("the answer's header block is too long")
            await self._fill()
        head = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise httpcore2.RemoteProtocolError(f"not an HTTP/1.x status line: {lines[0]!r:.80}")
        status = int(parts[1])
        keep_alive = parts[0] == b"HTTP/1.1"
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise httpcore2.RemoteProtocolError("a header line without a colon")
            name = name.strip().lower()
            value = value.strip()
            if name == b"content-length":
                if not value.isdigit() or (length is not None and length != int(value)):
                    raise httpcore2.RemoteProtocolError("a bad Content-Length")
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
                if not chunked:
                    keep_alive = False  # framed by the close
            elif name == b"connection" and b"close" in value.lower():
                keep_alive = False
        return status, keep_alive, (None if chunked else length), chunked

    async def _read_length(self, length: int, limit: int) -> tuple[bytes, bool]:
        wanted = min(length, limit)
        while len(self._buffer) < wanted:
            await self._fill()
        body = bytes(self._buffer[:wanted])
        del self._buffer[:wanted]
        return body, wanted == length

    async def _read_to_close(self, limit: int) -> tuple[bytes, bool]:
        while len(self._buffer) < limit:
            data = await self._stream.read(_READ_BYTES)
            if not data:
                break
            self._buffer += data
        body = bytes(self._buffer[:limit])
        self._buffer.clear()
        return body, False

    async def _read_chunked(self, limit: int) -> tuple[bytes, bool]:
        body = bytearray()
        while True:
            while (end := self._buffer.find(b"\r\n")) < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise httpcore2.RemoteProtocolError("a chunk size line is too long")
                await self._fill()
            size_text = bytes(self._buffer[:end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError as exc:
                raise httpcore2.RemoteProtocolError("a bad chunk size") from exc
            del self._buffer[: end + 2]
            if size == 0:
                # Trailers (if any) up to the empty line end the answer.
                while True:
                    while (end := self._buffer.find(b"\r\n")) < 0:
                        if len(self._buffer) > MAX_HEAD_BYTES:
                            raise httpcore2.RemoteProtocolError("the trailers are too long")
                        await self._fill()
                    del self._buffer[: end + 2]
                    if end == 0:
                        return bytes(body), True
            if len(body) + size > limit:
                # What is past the limit is dropped with the connection.
                while len(self._buffer) < limit - len(body):
                    await self._fill()
                body += self._buffer[: limit - len(body)]
                return bytes(body), False
            while len(self._buffer) < size + 2:
                await self._fill()
            body += self._buffer[:size]
            del self._buffer[: size + 2]
