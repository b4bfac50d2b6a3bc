"""Which callback addresses and URLs are refused (domain/url_safety.py)."""

from __future__ import annotations

import ipaddress

import pytest

from smsgate.domain.url_safety import (
    UnsafeUrlError,
    check_address,
    is_public_address,
    parse_callback_url,
)

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.5",
    "172.16.3.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # shared address space (CGNAT)
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.10",  # documentation
    "198.18.0.1",  # benchmarking
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
]
ALLOWED = [
    "8.8.8.8",
    "93.184.215.14",
    "1.1.1.1",
    "2001:4860:4860::8888",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))
    with pytest.raises(UnsafeUrlError, match="non-public"):
        check_address("shop.example", address)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))
    assert check_address("shop.example", address) == ipaddress.ip_address(address)


def test_a_scoped_ipv6_address_is_refused() -> None:
    with pytest.raises(UnsafeUrlError):
        check_address("shop.example", "fe80::1%eth0")


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port"),
    [
        ("https://shop.example/cb.php?x=1", "https", "shop.example", 443),
        ("http://shop.example:8080/cb", "http", "shop.example", 8080),
        ("HTTP://Shop.Example/cb", "http", "shop.example", 80),
        ("http://[2001:db8::1]:81/", "http", "2001:db8::1", 81),
    ],
)
def test_parse_callback_url(url: str, scheme: str, host: str, port: int) -> None:
    target = parse_callback_url(url)
    assert (target.scheme, target.host, target.port) == (scheme, host, port)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://shop.example/x",
        "file:///etc/passwd",
        "gopher://x",
        "http://",
        "shop.example/cb",
        "http://shop.example:99999/",
        "javascript:alert(1)",
    ],
)
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError):
        parse_callback_url(url)
