"""An access-code service as the check path and the MO handler read it: its stored settings
(``services.settings``) turned into domain rules once, with every default in one place.

The keys and their defaults are documented in docs/access_codes.md. Stored settings are
written by provisioning, which validates them; reading is nevertheless lenient (an unknown
key is ignored, a missing one takes its default) so that a service provisioned by an older
version keeps working.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from smsgate.domain.access_codes import CodeAlphabet, CodeKind, CodeRules
from smsgate.domain.errors import DomainError
from smsgate.services.bans import BanPolicy

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULTS: Final[Mapping[str, Any]] = {
    "code_kind": "uses",
    "validity_seconds": 3600,
    "uses": 1,
    "code_length": 8,
    "alphabet": "alnum",
    "reply_template": "Your code: {code}",
    "max_replies_per_mo": 1,
    "lifetime_seconds": None,
    "ban_after_failures": 10,
    "ban_window_seconds": 600,
    "ban_seconds": 3600,
    "return_url": None,
}


class MisconfiguredService(ValueError):
    """The stored settings cannot be turned into code rules (should not pass provisioning)."""


@dataclass(frozen=True, slots=True)
class AccessCodeConfig:
    """What an access-code service's settings mean."""

    rules: CodeRules
    reply_template: str
    max_replies_per_mo: int
    bans: BanPolicy
    return_url: str | None


def _setting(stored: Mapping[str, Any], key: str) -> Any:
    value = stored.get(key)
    return DEFAULTS[key] if value is None else value


def read_config(stored: Mapping[str, Any]) -> AccessCodeConfig:
    """The service's rules; :class:`MisconfiguredService` when they are unusable."""
    try:
        kind = CodeKind(_setting(stored, "code_kind"))
        validity = int(_setting(stored, "validity_seconds"))
        lifetime = stored.get("lifetime_seconds")
        lifetime_seconds = int(lifetime) if lifetime else None
        if kind is CodeKind.USES and validity > 0:
            # A uses code also ends validity_seconds after issue (DESIGN.md §3's example:
            # one use within an hour); with lifetime_seconds too, the earlier end wins.
            lifetime_seconds = min(validity, lifetime_seconds or validity)
        rules = CodeRules.from_settings(
            kind=kind.value,
            length=int(_setting(stored, "code_length")),
            alphabet=CodeAlphabet(_setting(stored, "alphabet")).value,
            validity_seconds=validity,
            uses=int(_setting(stored, "uses")),
            lifetime_seconds=lifetime_seconds,
        )
        bans = BanPolicy(
            after_failures=int(_setting(stored, "ban_after_failures")),
            window_seconds=int(_setting(stored, "ban_window_seconds")),
            ban_seconds=int(_setting(stored, "ban_seconds")),
        )
        return AccessCodeConfig(
            rules=rules,
            reply_template=str(_setting(stored, "reply_template")),
            max_replies_per_mo=int(_setting(stored, "max_replies_per_mo")),
            bans=bans,
            return_url=stored.get("return_url") or None,
        )
    except (ValueError, TypeError, DomainError) as exc:
        raise MisconfiguredService(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class Allowlist:
    """The addresses a service accepts checks from; ``restricted`` False lets everyone in."""

    networks: tuple[IpNetwork, ...]
    restricted: bool

    @classmethod
    def parse(cls, entries: Sequence[Any]) -> Allowlist:
        # An entry that does not parse allows nothing, and never widens the list to "anyone".
        networks: list[IpNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
            except ValueError:
                continue
        return cls(tuple(networks), restricted=bool(entries))

    def allows(self, address: str) -> bool:
        """An IPv4-mapped IPv6 address counts as its IPv4 address."""
        if not self.restricted:
            return True
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)
