"""What one operator link needs to know, read from the ``operators`` row.

The fixed columns (host, port, system_id, password, tps, window) and the provisioned link keys
in ``operators.settings`` (see ``OperatorEntry.LINK_KEYS`` in domain/provisioning.py) become a
frozen :class:`LinkSettings`. A few tuning keys may also be set in ``operators.settings`` by
hand; each has a default that suits a real SMSC (docs/smpp.md lists them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from smsgate.domain.receipts import IdFormat
from smsgate.domain.text import Alphabet

BindMode = Literal["transceiver", "transmitter_receiver"]
ConcatMethod = Literal["udh", "sar", "payload"]


@dataclass(frozen=True, slots=True)
class LinkSettings:
    operator_id: str
    host: str
    port: int
    system_id: str
    password: str
    system_type: str = ""
    bind_mode: BindMode = "transceiver"
    window: int = 10
    tps: int = 100
    enquire_link_seconds: float = 30.0
    reconnect_max_seconds: float = 60.0
    source_ton: int | None = None
    source_npi: int | None = None
    dlr_request: bool = True
    dlr_id_format: IdFormat | None = None
    concat: ConcatMethod = "udh"
    # Tuning, not provisioned.
    reconnect_min_seconds: float = 1.0
    connect_timeout_seconds: float = 10.0
    response_timeout_seconds: float = 30.0
    """A submit_sm without a response after this long is ``unknown`` (never re-sent)."""
    retry_min_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    """ESME_RTHROTTLED / ESME_RMSGQFUL: the message is queued again this long later."""
    mo_redelivery_seconds: float = 600.0
    """How long an MO whose acknowledgement is unconfirmed guards against its redelivery."""
    fragment_max_age_seconds: float = 24 * 3600.0
    """Parts of a concatenated MO still missing others after this long are dropped."""
    default_alphabet: Alphabet = Alphabet.GSM7
    """What the SMSC means by data_coding 0 in the MOs it delivers."""

    @property
    def inactivity_seconds(self) -> float:
        # Three missed enquire_link exchanges mean the peer is gone.
        return max(3.0 * self.enquire_link_seconds, self.response_timeout_seconds)

    @property
    def claim_batch(self) -> int:
        """MTs claimed at once: about half a second of traffic at the TPS limit, at least a
        window's worth. Claimed MTs of a crashed process become ``unknown``, so more is worse."""
        return max(self.window, min(2000, self.tps // 2))

    def redacted(self) -> dict[str, Any]:
        """The settings without the password, for logs and the panel."""
        return {
            name: getattr(self, name) for name in self.__dataclass_fields__ if name != "password"
        }


def _number(settings: Mapping[str, Any], key: str, default: float) -> float:
    value = settings.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return default


def _optional_int(settings: Mapping[str, Any], key: str) -> int | None:
    value = settings.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def link_settings(
    *,
    operator_id: str,
    host: str,
    port: int,
    system_id: str,
    password: str,
    tps: int,
    window: int,
    settings: Mapping[str, Any] | None,
) -> LinkSettings:
    """LinkSettings from an operator's columns and its ``settings`` JSON (lenient: a value of
    the wrong type falls back to the default, since provisioning has validated the keys)."""
    extra = settings or {}
    bind_mode = extra.get("bind_mode")
    dlr_id_format = extra.get("dlr_id_format")
    concat = extra.get("concat")
    alphabet = extra.get("default_alphabet")
    return LinkSettings(
        operator_id=operator_id,
        host=host,
        port=port,
        system_id=system_id,
        password=password,
        system_type=str(extra.get("system_type") or ""),
        bind_mode="transmitter_receiver" if bind_mode == "transmitter_receiver" else "transceiver",
        window=max(1, window),
        tps=max(1, tps),
        enquire_link_seconds=_number(extra, "enquire_link_seconds", 30.0),
        reconnect_max_seconds=_number(extra, "reconnect_max_seconds", 60.0),
        source_ton=_optional_int(extra, "source_ton"),
        source_npi=_optional_int(extra, "source_npi"),
        dlr_request=extra.get("dlr_request") is not False,
        dlr_id_format=dlr_id_format if dlr_id_format in ("hex", "dec") else None,
        concat=concat if concat in ("sar", "payload") else "udh",
        connect_timeout_seconds=_number(extra, "connect_timeout_seconds", 10.0),
        response_timeout_seconds=_number(extra, "response_timeout_seconds", 30.0),
        retry_min_seconds=_number(extra, "retry_min_seconds", 1.0),
        retry_max_seconds=_number(extra, "retry_max_seconds", 60.0),
        mo_redelivery_seconds=_number(extra, "mo_redelivery_seconds", 600.0),
        fragment_max_age_seconds=_number(extra, "fragment_max_age_seconds", 24 * 3600.0),
        default_alphabet=(
            Alphabet(alphabet) if alphabet in {a.value for a in Alphabet} else Alphabet.GSM7
        ),
    )
