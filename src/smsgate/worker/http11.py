"""One keep-alive HTTP/1.1 client connection, for callbacks: a request out, its answer in.

httpcore2's HTTP/1.1 connection drives h11, which validates every header of every request
and answer with regular expressions and walks a state machine per event; for a callback
(a small form POST, a short answer) that was most of the worker's CPU per callback
(bench/webhooks.py ``--profile``). Here the request goes out as one write of bytes the
worker built itself (webhook_sender.build_request: names and values it encoded; a line break
in a header is refused), and the answer is parsed by httptools (llhttp, the parser of
Node.js, installed with uvicorn's standard extras), which hands over only what a callback
needs: the status, the body up to a limit, and whether the connection may be kept.

A connection is reused only when the answer was read to its end and llhttp says it may be
kept (HTTP/1.1 without ``Connection: close``); anything else unexpected (a malformed answer,
bytes beyond the answer, an answer past the limit) drops the connection.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpcore2
import httptools

_READ_BYTES = 64 * 1024


class _Answer:
    """llhttp's callbacks for one exchange: the final answer's status and body."""

    def __init__(self, limit: int) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.limit = limit
        self.status = 0
        self.body = bytearray()
        self.framed = False  # Content-Length or Transfer-Encoding: else the close ends it
        self.headers_done = False
        self.complete = False
        self.cut = False  # more body than the limit
        self.beyond = False  # bytes after the answer (nobody asked for a second one)
        self.keep_alive = False

    def on_message_begin(self) -> None:
        if self.complete:
            self.beyond = True
        self.framed = False
        self.headers_done = False

    def on_header(self, name: bytes, _value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.status = self.parser.get_status_code()

    def on_body(self, chunk: bytes) -> None:
        room = self.limit - len(self.body)
        if len(chunk) > room:
            self.body += chunk[:room]
            self.cut = True
        else:
            self.body += chunk

    def on_message_complete(self) -> None:
        # An interim answer (100 Continue, 103 Early Hints) is followed by the real one.
        if 100 <= self.status < 200 and self.status != 101:
            return
        self.complete = True
        # llhttp answers this only while the message is the current one.
        self.keep_alive = self.parser.should_keep_alive()


class CallbackConnection:
    """An HTTP/1.1 connection over an httpcore2 network stream (pooled by
    ``safe_transport.CallbackConnections``)."""

    def __init__(self, stream: httpcore2.AsyncNetworkStream, *, keepalive_seconds: float) -> None:
        self._stream = stream
        self._keepalive = keepalive_seconds
        self._reusable = True
        self._idle_since = time.monotonic()

    def has_expired(self) -> bool:
        """Idle past keep-alive, or the merchant closed it (or sent bytes nobody asked for)."""
        if time.monotonic() - self._idle_since > self._keepalive:
            return True
        return bool(self._stream.get_extra_info("is_readable"))

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
        answer = _Answer(limit)
        keep = await self._read(answer)
        self._reusable = keep
        self._idle_since = time.monotonic()
        return answer.status, bytes(answer.body)

    # --- reading ---------------------------------------------------------------------------

    async def _read(self, answer: _Answer) -> bool:
        """Feed the parser until the answer is complete, cut at the limit, or ended by the
        close; returns whether the connection may carry the next callback."""
        while True:
            data = await self._stream.read(_READ_BYTES)
            if not data:
                if answer.headers_done and not answer.framed:
                    return False  # framed by the close: the close ends it
                raise httpcore2.RemoteProtocolError("the server closed the connection mid-answer")
            try:
                answer.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                answer.complete = True  # 101: the answer is the status; the connection goes
                return False
            except httptools.HttpParserError as exc:
                if answer.complete or answer.cut:
                    return False  # garbage after the answer: keep the answer, drop the line
                raise httpcore2.RemoteProtocolError(f"a malformed answer: {exc}") from exc
            if answer.cut:
                return False
            if answer.complete:
                return answer.keep_alive and not answer.beyond
