"""The worker's connections to merchants (safe_transport.CallbackConnections over the asyncio
backend): keep-alive reuse, a connection the merchant closed is not reused, a limit per host,
answers read only up to a limit, and HTTPS with the certificate checked for the host name."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpcore2
import pytest

from smsgate.worker.safe_transport import CallbackConnections


class _Server:
    """HTTP/1.1 on 127.0.0.1: answers every request 200 with ``body``; closes each connection
    after one answer when ``close_after_answer``."""

    def __init__(self, body: bytes = b"ok", close_after_answer: bool = False) -> None:
        self.body = body
        self.close_after_answer = close_after_answer
        self.connections = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.delay = 0.0
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")[1:]
                headers = dict(line.lower().split(": ", 1) for line in lines if line)
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                await asyncio.sleep(self.delay)
                self.in_flight -= 1
                length = str(len(self.body)).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: " + length + b"\r\n\r\n")
                writer.write(self.body)
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    serving = _Server()
    serving.server = await asyncio.start_server(serving.serve, "127.0.0.1", 0)
    yield serving
    serving.server.close()
    await serving.server.wait_closed()


def _request(port: int, scheme: bytes = b"http", host: bytes = b"127.0.0.1") -> httpcore2.Request:
    return httpcore2.Request(
        b"POST",
        httpcore2.URL(scheme=scheme, host=host, port=port, target=b"/hook"),
        headers=[(b"host", host), (b"content-length", b"3")],
        content=b"a=1",
    )


async def test_keep_alive_reuses_one_connection(server: _Server) -> None:
    connections = CallbackConnections(allow_private=True)
    try:
        for _ in range(5):
            answer = await connections.request(_request(server.port), timeout_seconds=5, limit=1000)
            assert (answer.status, answer.body) == (200, b"ok")
    finally:
        await connections.aclose()
    assert server.connections == 1


async def test_a_connection_the_merchant_closed_is_not_reused(server: _Server) -> None:
    server.close_after_answer = True
    connections = CallbackConnections(allow_private=True)
    try:
        for _ in range(3):
            answer = await connections.request(_request(server.port), timeout_seconds=5, limit=1000)
            assert answer.status == 200
            await asyncio.sleep(0.05)  # the close reaches us
    finally:
        await connections.aclose()
    assert server.connections == 3


async def test_at_most_per_origin_requests_to_one_host_at_a_time(server: _Server) -> None:
    server.delay = 0.05
    connections = CallbackConnections(allow_private=True, per_origin=3)
    try:
        answers = await asyncio.gather(
            *(
                connections.request(_request(server.port), timeout_seconds=5, limit=1000)
                for _ in range(12)
            )
        )
    finally:
        await connections.aclose()
    assert [answer.status for answer in answers] == [200] * 12
    assert server.most_in_flight == 3
    assert server.connections == 3


async def test_a_long_answer_is_cut_and_its_connection_dropped(server: _Server) -> None:
    server.body = b"x" * 200_000
    connections = CallbackConnections(allow_private=True)
    try:
        answer = await connections.request(_request(server.port), timeout_seconds=5, limit=1000)
        assert answer.status == 200
        assert 1000 <= len(answer.body) < 200_000
        assert connections.open_connections == 0
    finally:
        await connections.aclose()


async def test_a_private_address_is_refused_when_connecting(server: _Server) -> None:
    connections = CallbackConnections(allow_private=False)
    try:
        with pytest.raises(ValueError, match="non-public"):
            await connections.request(_request(server.port), timeout_seconds=5, limit=1000)
    finally:
        await connections.aclose()
    assert server.connections == 0


async def test_https_checks_the_certificate_for_the_host_name(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    serving = _Server()
    serving.server = await asyncio.start_server(serving.serve, "127.0.0.1", 0, ssl=server_side)
    client_side = ssl.create_default_context(cafile=str(cert))
    connections = CallbackConnections(allow_private=True, ssl_context=client_side)
    try:
        for _ in range(2):
            request = _request(serving.port, scheme=b"https", host=b"localhost")
            answer = await connections.request(request, timeout_seconds=5, limit=1000)
            assert (answer.status, answer.body) == (200, b"ok")
        assert serving.connections == 1  # kept alive over TLS too
        # The same server under a name its certificate does not carry: refused.
        wrong = _request(serving.port, scheme=b"https", host=b"127.0.0.1")
        with pytest.raises(httpcore2.ConnectError, match="TLS"):
            await connections.request(wrong, timeout_seconds=5, limit=1000)
    finally:
        await connections.aclose()
        serving.server.close()
        await serving.server.wait_closed()
