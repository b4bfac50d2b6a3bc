"""The HTTP client for merchant callbacks: pooled keep-alive connections, public hosts only.

Keep-alive: one client serves the whole worker, so consecutive callbacks to one merchant reuse
a connection instead of opening one each (DESIGN.md §2.2).

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
from collections.abc import Iterable

import httpcore2
import httpx2

from smsgate.config import Settings
from smsgate.domain.url_safety import UnsafeUrlError, check_address

USER_AGENT = "smsgate-webhooks/1"


class PublicOnlyBackend(httpcore2.AsyncNetworkBackend):
    """Resolves, checks, then connects to the checked address (see the module docstring)."""

    def __init__(self, inner: httpcore2.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore2.AnyIOBackend()

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


class _PublicOnlyTransport(httpx2.AsyncHTTPTransport):
    def __init__(self, *, limits: httpx2.Limits) -> None:
        super().__init__(limits=limits)
        # The stock transport builds the same pool without a way to pass a network backend;
        # rebuild it with ours. (Covered by tests/integration/webhooks: a private address must
        # be refused through this client.)
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PublicOnlyBackend(),
        )


def make_webhook_client(settings: Settings) -> httpx2.AsyncClient:
    """The worker's one client for callbacks."""
    limits = httpx2.Limits(
        max_connections=max(10, settings.worker_concurrency),
        max_keepalive_connections=max(10, settings.worker_concurrency),
        keepalive_expiry=30.0,
    )
    transport: httpx2.AsyncHTTPTransport
    if settings.webhook_allow_private:
        transport = httpx2.AsyncHTTPTransport(limits=limits)
    else:
        transport = _PublicOnlyTransport(limits=limits)
    return httpx2.AsyncClient(
        transport=transport,
        timeout=httpx2.Timeout(settings.webhook_timeout_seconds),
        follow_redirects=False,
        # No proxies or .netrc credentials from the environment for merchants' URLs.
        trust_env=False,
        headers={"user-agent": USER_AGENT},
    )
