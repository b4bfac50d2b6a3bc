"""The connections for merchant callbacks: pooled keep-alive connections, public hosts only.

Keep-alive: one ``CallbackConnections`` serves the whole worker, so consecutive callbacks to
one merchant reuse a few connections instead of opening one each (DESIGN.md §2.2).

Address check, pinned: the check sits in the connection layer. When the pool opens a
connection it asks our network backend, which resolves the host (asyncio ``getaddrinfo``),
refuses the whole host if any address is not public (domain/url_safety.py), and connects to
the addresses it just checked, by number. There is no second lookup for a DNS-rebinding
attacker to answer differently, TLS still verifies the certificate for the host name, and a
redirect cannot lead elsewhere (redirects are not followed anyway). With
``webhook_allow_private`` the check is skipped.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import httpcore2
import httpx2

from smsgate.domain.url_safety import UnsafeUrlError, check_address
from smsgate.worker.asyncio_stream import AsyncioBackend
from smsgate.worker.http11 import CallbackConnection

USER_AGENT = "smsgate-webhooks/1"


class PublicOnlyBackend(httpcore2.AsyncNetworkBackend):
    """Resolves, checks, then connects to the checked address (see the module docstring)."""

    def __init__(self, inner: httpcore2.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or AsyncioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore2's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        checked = [str(check_address(host, address)) for address in addresses]
        last_error: Exception | None = None
        for address in dict.fromkeys(checked):  # unique, in resolver order
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore2's interface)
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise UnsafeUrlError("callbacks never go to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    @staticmethod
    async def _resolve(host: str, port: int, limit_seconds: float | None) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(limit_seconds):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:
            raise httpcore2.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = [str(info[4][0]) for info in infos]
        if not addresses:
            raise httpcore2.ConnectError(f"{host} has no address")
        return addresses


@dataclass(frozen=True)
class Answer:
    """The status of an answer and the start of its body (at most ``limit`` bytes)."""

    status: int
    body: bytes


class _Origin:
    """The connections to one scheme://host:port: at most ``limit`` at once."""

    def __init__(self, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.idle: list[CallbackConnection] = []
        self.last_used = time.monotonic()
        self.users = 0  # requests sending or waiting for a slot


class CallbackConnections:
    """Keep-alive HTTP/1.1 connections to merchants, pooled per origin, public hosts only.

    At most ``per_origin`` requests to one origin run at once (each on its own connection), so
    one merchant cannot take every connection and a burst of callbacks to it reuses a few
    warm connections. New connections go through ``PublicOnlyBackend`` (unless
    ``allow_private``): the address check happens when connecting, as before. The protocol is
    ``http11.CallbackConnection`` (not h11: see there); this class only hands connections out
    and takes them back, which costs less than httpcore2's general pool (no scan of every
    connection on every request).
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        per_origin: int = 16,
        keepalive_seconds: float = 30.0,
        backend: httpcore2.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        inner = AsyncioBackend()
        self._backend = backend or (inner if allow_private else PublicOnlyBackend(inner))
        self._per_origin = per_origin
        self._keepalive = keepalive_seconds
        self._origins: dict[tuple[bytes, bytes, int], _Origin] = {}
        self._ssl_context = ssl_context
        self._last_sweep = time.monotonic()

    @property
    def open_connections(self) -> int:
        return sum(len(origin.idle) for origin in self._origins.values())

    async def request(
        self,
        request: httpcore2.Request,
        *,
        timeout_seconds: float,
        limit: int,
        on_start: Callable[[], None] | None = None,
    ) -> Answer:
        """``send`` for an httpcore2 request."""
        url = request.url
        content = b"".join([chunk async for chunk in request.stream])  # type: ignore[union-attr]
        return await self.send(
            url.origin, request.method, url.target, request.headers, content,
            timeout_seconds=timeout_seconds, limit=limit, on_start=on_start,
        )  # fmt: skip

    async def send(
        self,
        target_origin: httpcore2.Origin,
        method: bytes,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        content: bytes,
        *,
        timeout_seconds: float,
        limit: int,
        on_start: Callable[[], None] | None = None,
    ) -> Answer:
        """Send a request and read up to ``limit`` bytes of the answer, all within
        ``timeout_seconds`` from the moment a connection slot is free (``on_start`` is called
        then). httpcore2's errors (``ConnectError``, ...) and ``UnsafeUrlError`` pass through;
        the whole exchange running late raises ``TimeoutError``."""
        key = (target_origin.scheme, target_origin.host, target_origin.port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(self._per_origin)
        origin.users += 1
        try:
            async with origin.slots:
                origin.last_used = time.monotonic()
                if on_start is not None:
                    on_start()
                async with asyncio.timeout(timeout_seconds):
                    connection = self._idle_connection(origin)
                    if connection is None:
                        connection = await self._connect(target_origin)
                    try:
                        status, body = await connection.exchange(
                            method, target, headers, content, limit=limit
                        )
                    except BaseException:
                        await connection.aclose()
                        raise
                if connection.is_idle():
                    origin.idle.append(connection)
                else:
                    await connection.aclose()
        finally:
            origin.users -= 1
        self._sweep_now_and_then()
        return Answer(status=status, body=body)

    def _idle_connection(self, origin: _Origin) -> CallbackConnection | None:
        while origin.idle:
            connection = origin.idle.pop()
            if connection.has_expired():  # idle too long, or the merchant closed it
                _close_soon(connection)
                continue
            return connection
        return None

    async def _connect(self, origin: httpcore2.Origin) -> CallbackConnection:
        # No timeouts of their own: request() bounds the whole exchange, connecting included.
        host = origin.host.decode("ascii")
        stream = await self._backend.connect_tcp(host, origin.port)
        if origin.scheme == b"https":
            try:
                stream = await stream.start_tls(self._tls(), server_hostname=host)
            except BaseException:
                await stream.aclose()
                raise
        return CallbackConnection(stream, keepalive_seconds=self._keepalive)

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            context = httpx2.create_ssl_context()
            context.set_alpn_protocols(["http/1.1"])
            self._ssl_context = context
        return self._ssl_context

    def _sweep_now_and_then(self) -> None:
        # Close connections idle past keep-alive and forget origins unused for a while, so
        # merchants called once do not hold sockets open for ever.
        now = time.monotonic()
        if now - self._last_sweep < self._keepalive / 3:
            return
        self._last_sweep = now
        for key, origin in list(self._origins.items()):
            kept = []
            for connection in origin.idle:
                if connection.has_expired():
                    _close_soon(connection)
                else:
                    kept.append(connection)
            origin.idle = kept
            unused = now - origin.last_used > self._keepalive
            if not kept and unused and origin.users == 0:
                del self._origins[key]

    async def aclose(self) -> None:
        origins, self._origins = self._origins, {}
        for origin in origins.values():
            for connection in origin.idle:
                await connection.aclose()


_closing: set[asyncio.Task[None]] = set()


def _close_soon(connection: CallbackConnection) -> None:
    task = asyncio.get_running_loop().create_task(connection.aclose())
    _closing.add(task)
    task.add_done_callback(_closing.discard)
