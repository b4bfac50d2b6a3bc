"""Which callback URLs we may call: only http(s), and only hosts on the public internet.

A merchant configures its callback URLs, so without this check anyone with a merchant account
could make the gateway send requests into the network it runs in (server-side request
forgery): ``http://127.0.0.1:8080/admin``, the cloud metadata service at ``169.254.169.254``,
a database on ``10.0.0.5``. The address is checked after resolution, at delivery time, in
``worker/safe_transport.py``; this module holds the pure rules.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = frozenset({"http", "https"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeUrlError(ValueError):
    """A callback URL we refuse to call; retrying would not change the answer."""


@dataclass(frozen=True)
class CallbackTarget:
    scheme: str
    host: str
    port: int


def parse_callback_url(url: str) -> CallbackTarget:
    """The scheme, host and port of a callback URL, or ``UnsafeUrlError``."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrlError(f"malformed callback URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeUrlError(f"callback URL scheme must be http or https, not {scheme!r}")
    host = parts.hostname or ""
    if not host:
        raise UnsafeUrlError("callback URL has no host")
    return CallbackTarget(scheme=scheme, host=host, port=port or (443 if scheme == "https" else 80))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # An IPv6 address can carry an IPv4 one that the stack or a gateway will actually reach:
    # ::ffff:a.b.c.d (IPv4-mapped), 64:ff9b::a.b.c.d (NAT64, RFC 6052), 2002:AABB:CCDD::
    # (6to4) and Teredo's client address.
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public_address(address: IPAddress) -> bool:
    """True only for a globally routable unicast address.

    Refused: loopback, link-local, private (RFC 1918, ULA fc00::/7), shared (100.64/10),
    multicast, unspecified, reserved, documentation and benchmarking ranges, and IPv6 forms
    that embed such an IPv4 address.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            if address.ipv4_mapped is not None or address in _NAT64:
                # The packet goes to the IPv4 address: judge that one alone.
                return is_public_address(embedded)
            if not is_public_address(embedded):
                return False
    return not (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or not address.is_global
    )


def check_address(host: str, address: str) -> IPAddress:
    """The parsed ``address`` that ``host`` resolved to, or ``UnsafeUrlError``."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError as exc:
        raise UnsafeUrlError(f"{host} resolved to an unparsable address {address!r}") from exc
    if not is_public_address(parsed):
        raise UnsafeUrlError(
            f"{host} resolves to {parsed}, a non-public address "
            "(set SMSGATE_WEBHOOK_ALLOW_PRIVATE=true to allow)"
        )
    return parsed
