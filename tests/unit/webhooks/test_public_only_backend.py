"""The connection layer refuses non-public addresses and connects to the checked address."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore2
import pytest

from smsgate.domain.url_safety import UnsafeUrlError
from smsgate.worker.safe_transport import PublicOnlyBackend


class RecordingBackend(httpcore2.AsyncNetworkBackend):
    """Stands in for the network: records where it was asked to connect."""

    def __init__(self, refuse: Iterable[str] = ()) -> None:
        self.calls: list[tuple[str, int]] = []
        self.refuse = set(refuse)

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((host, port))
        if host in self.refuse:
            raise httpcore2.ConnectError(f"refused by {host}")
        return f"stream to {host}"


class FixedResolution(PublicOnlyBackend):
    def __init__(self, inner: httpcore2.AsyncNetworkBackend, addresses: list[str]) -> None:
        super().__init__(inner)
        self.addresses = addresses

    async def _resolve(self, host: str, port: int, limit_seconds: float | None) -> list[str]:  # type: ignore[override]
        return self.addresses


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "169.254.169.254", "10.1.2.3"])
async def test_non_public_hosts_are_refused_before_connecting(host: str) -> None:
    inner = RecordingBackend()
    with pytest.raises(UnsafeUrlError, match="non-public"):
        await PublicOnlyBackend(inner).connect_tcp(host, 80)
    assert inner.calls == []


async def test_a_public_address_is_connected_to_by_number() -> None:
    inner = RecordingBackend()
    stream = await PublicOnlyBackend(inner).connect_tcp("93.184.215.14", 443)
    assert stream == "stream to 93.184.215.14"
    assert inner.calls == [("93.184.215.14", 443)]


async def test_one_private_address_among_public_ones_refuses_the_host() -> None:
    inner = RecordingBackend()
    backend = FixedResolution(inner, ["93.184.215.14", "10.0.0.1"])
    with pytest.raises(UnsafeUrlError):
        await backend.connect_tcp("shop.example", 443)
    assert inner.calls == []


async def test_the_next_checked_address_is_tried_when_one_refuses() -> None:
    inner = RecordingBackend(refuse={"93.184.215.14"})
    backend = FixedResolution(inner, ["93.184.215.14", "93.184.215.14", "2606:2800:21f::1"])
    assert await backend.connect_tcp("shop.example", 443) == "stream to 2606:2800:21f::1"
    assert inner.calls == [("93.184.215.14", 443), ("2606:2800:21f::1", 443)]


async def test_an_unresolvable_host_is_a_connect_error() -> None:
    # Bounded: without a reachable resolver this ends as a timeout, which is retried alike.
    with pytest.raises((httpcore2.ConnectError, httpcore2.ConnectTimeout)):
        await PublicOnlyBackend(RecordingBackend()).connect_tcp(
            "no-such-host.invalid", 80, timeout=5.0
        )


async def test_unix_sockets_are_refused() -> None:
    with pytest.raises(UnsafeUrlError):
        await PublicOnlyBackend(RecordingBackend()).connect_unix_socket("/run/docker.sock")
