"""What the simulator knows from the provisioning file, and its own run-time options.

The simulator reads the same TOML file as ``smsgate apply``, but only its ``[[operators]]``
(whose binds it accepts) and ``[[short_numbers]]`` (by which it prices MOs); the other sections
are ignored, so a file that the gateway is still being provisioned from works here too.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smsgate.domain.config_errors import ConfigError, ConfigIssue, entry_label
from smsgate.domain.provisioning import ProvisioningDocument, parse_document
from smsgate.simulator.receipts import DlrSettings, IdFormat

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimOperator:
    """An operator whose SMSC the simulator plays."""

    id: str
    country: str
    system_id: str
    password: str
    system_type: str = ""
    dlr_id_format: IdFormat | None = None
    intake_secret: str | None = None


@dataclass(frozen=True, slots=True)
class SimShortNumber:
    """A short number on one operator, and what one MO to it costs the subscriber."""

    number: str
    operator: str
    price: str  # decimal string, as in the file
    price_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    """Run-time options (command line or the caller of :class:`Simulator`).

    ``inbox_limit``: messages kept per handset, oldest dropped first; 0 keeps none (benchmarks).
    ``default_balance_minor``: a new handset's balance; ``None`` means charges never fail for
    want of money until a balance is set.
    ``window``: deliver_sm (receipts and MOs) sent to one ESME session and not yet answered, at
    most; 1 plays an SMSC that sends the next only after the ESME's response.
    """

    gateway_url: str | None = None
    intake_secret: str | None = None  # overrides the operators' own intake_secret
    dlr: DlrSettings = field(default_factory=DlrSettings)
    inbox_limit: int = 1000
    default_balance_minor: int | None = None
    pending_receipts_limit: int = 100_000
    mo_message_ids: bool = False  # name MO parts with receipted_message_id, as some SMSCs do
    first_message_id: int = 0x2000_0000
    window: int = 1000

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("window must be at least 1")


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    operators: tuple[SimOperator, ...] = ()
    short_numbers: tuple[SimShortNumber, ...] = ()
    options: SimulatorOptions = field(default_factory=SimulatorOptions)

    def operator(self, operator_id: str) -> SimOperator | None:
        for operator in self.operators:
            if operator.id == operator_id:
                return operator
        return None

    def short_number(self, number: str, operator_id: str) -> SimShortNumber | None:
        for entry in self.short_numbers:
            if entry.number == number and entry.operator == operator_id:
                return entry
        return None

    def authenticate(self, system_id: str, password: str, system_type: str) -> SimOperator | None:
        """The operator whose credentials these are.

        Two operators may share a system_id and password (one simulator plays several SMSCs
        on one port); the bind's system_type then picks one, else the first in the file wins.
        """
        matches = [
            op for op in self.operators if op.system_id == system_id and op.password == password
        ]
        for operator in matches:
            if operator.system_type == system_type:
                return operator
        return matches[0] if matches else None


def config_from_document(
    document: ProvisioningDocument, options: SimulatorOptions | None = None
) -> SimulatorConfig:
    operators = tuple(
        SimOperator(
            id=op.id,
            country=op.country,
            system_id=op.system_id,
            password=op.password,
            system_type=op.system_type,
            dlr_id_format=op.dlr_id_format,
            intake_secret=op.intake_secret,
        )
        for op in document.operators
        if op.kind == "smpp"
    )
    short_numbers = tuple(
        SimShortNumber(
            number=sn.number,
            operator=sn.operator,
            price=sn.price,
            price_minor=sn.price_minor,
            currency=sn.currency,
        )
        for sn in document.short_numbers
    )
    config = SimulatorConfig(operators, short_numbers, options or SimulatorOptions())
    _warn_shared_credentials(config)
    return config


def config_from_mapping(
    data: Mapping[str, Any], *, source: str = "<config>", options: SimulatorOptions | None = None
) -> SimulatorConfig:
    """Validate the operators and short numbers of a decoded document; raise ConfigError."""
    wanted = {key: data[key] for key in ("operators", "short_numbers") if key in data}
    document = parse_document(wanted, source=source)
    known = {op.id for op in document.operators}
    issues = [
        ConfigIssue(
            entry_label("short_numbers", index, {"number": sn.number}),
            "operator",
            f"no operator with id {sn.operator!r}",
        )
        for index, sn in enumerate(document.short_numbers)
        if sn.operator not in known
    ]
    if issues:
        raise ConfigError(source, issues)
    return config_from_document(document, options)


def load_config(path: str | Path, options: SimulatorOptions | None = None) -> SimulatorConfig:
    """Read a provisioning TOML file; raise ConfigError (every problem listed) or OSError."""
    source = str(path)
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [ConfigIssue("(document)", "(syntax)", str(exc))]) from None
    return config_from_mapping(data, source=source, options=options)


def _warn_shared_credentials(config: SimulatorConfig) -> None:
    seen: dict[tuple[str, str, str], str] = {}
    for op in config.operators:
        key = (op.system_id, op.password, op.system_type)
        if key in seen:
            log.warning(
                "operators %s and %s have the same system_id and system_type: binds go to %s",
                seen[key],
                op.id,
                seen[key],
            )
        else:
            seen[key] = op.id
