"""A network backend for httpcore2 on plain asyncio transports.

httpcore2's default backend goes through anyio: every read and write opens a cancel scope
and every keep-alive check asks the socket for its attributes, which cost more CPU than the
HTTP/1.1 exchange itself (bench/webhooks.py, ``--client``). This backend does the same job
with an ``asyncio.Protocol`` that buffers what arrives and wakes the one reader waiting;
timeouts are ``asyncio.timeout``. HTTP itself stays httpcore2's (h11).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore2


class _Buffering(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.closed = False
        self.error: BaseException | None = None
        self.reader: asyncio.Future[None] | None = None
        self.writable: asyncio.Future[None] | None = None
        self.paused = False

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake_reader()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake_reader()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake_reader()
        self.resume_writing()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def _wake_reader(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)


# Writes are held back until the next read (or until this much is pending): httpcore2 writes a
# request's head, body and end separately, and one send per request instead of three saves
# system calls on both sides.
_HOLD_BYTES = 64 * 1024


class AsyncioStream(httpcore2.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Buffering) -> None:
        self._transport = transport
        self._protocol = protocol
        self._held: list[bytes] = []
        self._held_bytes = 0

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 (httpcore2's interface)
        protocol = self._protocol
        if self._held:
            await self._flush(timeout)
        if not protocol.buffer and not protocol.closed:
            protocol.reader = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:  # the caller bounds the whole exchange
                    await protocol.reader
                else:
                    async with asyncio.timeout(timeout):
                        await protocol.reader
            except TimeoutError as exc:
                raise httpcore2.ReadTimeout("timed out reading the answer") from exc
            finally:
                protocol.reader = None
        if protocol.buffer:
            data = bytes(protocol.buffer[:max_bytes])
            del protocol.buffer[:max_bytes]
            return data
        if protocol.error is not None:
            raise httpcore2.ReadError(str(protocol.error) or type(protocol.error).__name__)
        return b""  # the peer closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 (httpcore2's interface)
        if not buffer:
            return
        protocol = self._protocol
        if protocol.closed or self._transport.is_closing():
            raise httpcore2.WriteError("the connection is closed")
        self._held.append(buffer)
        self._held_bytes += len(buffer)
        if self._held_bytes >= _HOLD_BYTES:
            await self._flush(timeout)

    async def _flush(self, timeout: float | None) -> None:  # noqa: ASYNC109 (as read and write)
        held = b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        protocol = self._protocol
        if protocol.closed or self._transport.is_closing():
            raise httpcore2.WriteError("the connection is closed")
        self._transport.write(held)
        if protocol.paused:
            protocol.writable = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await protocol.writable
            except TimeoutError as exc:
                raise httpcore2.WriteTimeout("timed out sending the request") from exc
            finally:
                protocol.writable = None

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore2's interface)
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore2.ConnectTimeout("timed out in the TLS handshake") from exc
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore2.ConnectError(f"TLS: {exc}") from exc
        if transport is None:
            raise httpcore2.ConnectError("TLS: the connection closed during the handshake")
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Idle and readable means the peer closed (or sent junk): not reusable.
            return bool(self._protocol.buffer) or self._protocol.closed
        names = {
            "ssl_object": "ssl_object",
            "client_addr": "sockname",
            "server_addr": "peername",
            "socket": "socket",
        }
        return self._transport.get_extra_info(names[info]) if info in names else None


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore2's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Buffering,
                    host,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                )
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:
            raise httpcore2.ConnectError(f"{exc.strerror or exc}") from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore2's interface)
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("unix sockets are not supported")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
