"""Problems in a provisioning document, reported as ``file: entry: key: message``.

``entry`` names the entry as the file does, with its index from 0 and its id
(``services[1] (id=201)``); ``key`` is the key at fault (``limit_day``, ``short_numbers[0]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from smsgate.domain.service_settings import SERVICE_TYPES

SECTIONS = ("operators", "short_numbers", "merchants", "services", "routes")
DOCUMENT = "(document)"


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem: which entry (``services[1] (id=201)``), which key, what is wrong."""

    entry: str
    key: str
    message: str


class ConfigError(ValueError):
    """The document is invalid; ``issues`` lists every problem found."""

    def __init__(self, source: str, issues: Iterable[ConfigIssue]) -> None:
        self.source = source
        self.issues = list(issues)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.source}: {i.entry}: {i.key}: {i.message}" for i in self.issues]


_ID_KEY = {
    "operators": "id",
    "short_numbers": "number",
    "merchants": "id",
    "services": "id",
    "routes": "country",
}
_AMOUNT_KEYS = frozenset({"price", "credit", "price_per_part", "rebill_price"})
_SHARE_KEYS = frozenset({"operator_share", "merchant_share"})


def entry_label(section: str, index: int, entry: Any) -> str:
    """``services[1] (id=201)``: the index as in the file (from 0) and the entry's id."""
    label = f"{section}[{index}]"
    key = _ID_KEY.get(section)
    if key and isinstance(entry, Mapping) and key in entry:
        label += f" ({key}={entry[key]})"
    return label


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


def _message(error: ErrorDetails, key: str, entry: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        if isinstance(entry, Mapping) and entry.get("type") in SERVICE_TYPES:
            return f"unknown key for a service of type {entry['type']}"
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_not_found":
        return f"required key is missing (one of: {', '.join(SERVICE_TYPES)})"
    if kind == "union_tag_invalid":
        return f"unknown service type; expected one of: {', '.join(SERVICE_TYPES)}"
    if kind == "string_type" and key in _AMOUNT_KEYS:
        return 'an amount is a decimal string in quotes, such as "2.40"'
    if kind == "string_type" and key in _SHARE_KEYS:
        return 'a share is a percent string in quotes, such as "45.5%"'
    message = error["msg"]
    return message.removeprefix("Value error, ")


def _issue(error: ErrorDetails, data: Mapping[str, Any]) -> ConfigIssue:
    loc = tuple(error["loc"])
    if not loc:
        return ConfigIssue(DOCUMENT, DOCUMENT, error["msg"])
    section = str(loc[0])
    if len(loc) == 1:
        message = "unknown section; expected one of: " + ", ".join(SECTIONS)
        if error["type"] != "extra_forbidden":
            message = f"{error['msg']} (a section is a list of [[{section}]] tables)"
        return ConfigIssue(DOCUMENT, section, message)
    index = loc[1]
    raw_section = data.get(section)
    entry = raw_section[index] if isinstance(raw_section, list) and isinstance(index, int) else None
    rest = loc[2:]
    if section == "services" and rest and rest[0] in SERVICE_TYPES:
        rest = rest[1:]  # the discriminated union's tag, not a key
    key = _key_path(rest)
    if not key:
        key = "type" if error["type"].startswith("union_tag") else "(entry)"
    top_key = str(rest[0]) if rest else key
    label = entry_label(section, index, entry) if isinstance(index, int) else section
    if key == "(entry)" and not isinstance(entry, Mapping):
        return ConfigIssue(label, key, f"an entry is a [[{section}]] table (an object in JSON)")
    return ConfigIssue(label, key, _message(error, top_key, entry))


def issues_from_validation_error(
    exc: ValidationError, data: Mapping[str, Any]
) -> list[ConfigIssue]:
    """Pydantic's errors as issues that name the entry (from the raw ``data``) and the key."""
    return [_issue(error, data) for error in exc.errors()]
