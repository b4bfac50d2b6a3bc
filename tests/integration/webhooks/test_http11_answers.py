"""How the callback connection (worker/http11.py) reads merchants' answers, as servers send
them on 127.0.0.1: framed by Content-Length, chunked, or by the close; interim 100 answers;
``Connection: close``; answers past the limit; malformed answers. Each test checks the status
and body read, and whether the connection is kept for the next callback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpcore2
import pytest

from smsgate.worker.asyncio_stream import AsyncioBackend
from smsgate.worker.http11 import CallbackConnection

Connect = Callable[[bytes], Awaitable[tuple[CallbackConnection, list[bytes]]]]
REQUEST = (b"POST", b"/hook", [(b"host", b"127.0.0.1"), (b"content-length", b"3")], b"a=1")


async def _answering(answer: bytes) -> tuple[asyncio.Server, list[bytes]]:
    """A server that reads one request head and body, then writes ``answer`` raw (and
    repeats, on the same connection, for the next request)."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(3)
                received.append(head + body)
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0), received


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    servers: list[asyncio.Server] = []
    connections: list[CallbackConnection] = []

    async def make(answer: bytes) -> tuple[CallbackConnection, list[bytes]]:
        server, received = await _answering(answer)
        servers.append(server)
        port = int(server.sockets[0].getsockname()[1])
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port)
        connection = CallbackConnection(stream, keepalive_seconds=30.0)
        connections.append(connection)
        return connection, received

    yield make
    for connection in connections:
        await connection.aclose()
    for server in servers:
        server.close()
        await server.wait_closed()


async def _exchange(connection: CallbackConnection, limit: int = 1000) -> tuple[int, bytes]:
    method, target, headers, content = REQUEST
    async with asyncio.timeout(5):
        return await connection.exchange(method, target, headers, content, limit=limit)


async def test_a_content_length_answer_keeps_the_connection(connect: Connect) -> None:
    connection, received = await connect(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert await _exchange(connection) == (200, b"ok")
    assert connection.is_idle() and not connection.has_expired()
    assert await _exchange(connection) == (200, b"ok")
    assert received[0] == (
        b"POST /hook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 3\r\n\r\na=1"
    )
    assert len(received) == 2


async def test_a_chunked_answer_with_trailers_is_read_whole(connect: Connect) -> None:
    answer = (
        b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: 1\r\n\r\n"
    )
    connection, _ = await connect(answer)
    assert await _exchange(connection) == (500, b"abcde")
    assert connection.is_idle()
    assert await _exchange(connection) == (500, b"abcde")


async def test_an_interim_answer_is_skipped(connect: Connect) -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    connection, _ = await connect(answer)
    assert await _exchange(connection) == (204, b"")
    assert connection.is_idle()


async def test_connection_close_and_http_1_0_are_not_kept(connect: Connect) -> None:
    closing, _ = await connect(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert await _exchange(closing) == (200, b"")
    assert not closing.is_idle()
    old, _ = await connect(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx")
    assert await _exchange(old) == (200, b"x")
    assert not old.is_idle()


async def test_an_answer_past_the_limit_is_cut_and_not_kept(connect: Connect) -> None:
    long, _ = await connect(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
    assert await _exchange(long, limit=4) == (200, b"0123")
    assert not long.is_idle()
    chunked, _ = await connect(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"
    )
    assert await _exchange(chunked, limit=4) == (200, b"abcd")
    assert not chunked.is_idle()


async def test_an_answer_framed_by_the_close_is_read_to_the_close() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(3)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.sockets[0].getsockname()[1])
        connection = CallbackConnection(stream, keepalive_seconds=30.0)
        assert await _exchange(connection) == (200, b"all of it")
        assert not connection.is_idle()
        await connection.aclose()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "answer",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_a_malformed_answer_is_a_protocol_error(connect: Connect, answer: bytes) -> None:
    connection, _ = await connect(answer)
    with pytest.raises(httpcore2.RemoteProtocolError):
        await _exchange(connection)


async def test_a_header_with_a_line_break_is_refused_before_sending(connect: Connect) -> None:
    connection, received = await connect(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(httpcore2.LocalProtocolError):
        await connection.exchange(
            b"POST", b"/hook", [(b"x-evil", b"a\r\nInjected: 1")], b"a=1", limit=10
        )
    assert received == []


async def test_bytes_after_the_answer_drop_the_connection(connect: Connect) -> None:
    connection, _ = await connect(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200")
    assert await _exchange(connection) == (200, b"ok")
    assert not connection.is_idle()


async def test_a_switch_of_protocols_is_an_answer_and_ends_the_connection(
    connect: Connect,
) -> None:
    connection, _ = await connect(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
    assert await _exchange(connection) == (101, b"")
    assert not connection.is_idle()
