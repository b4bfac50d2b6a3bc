"""Reply templates: the text a subscriber gets back, with placeholders filled in.

Syntax: ``{name}`` for a placeholder, ``{{`` and ``}}`` for literal braces; anything else with
a brace is an error. Names (DESIGN §1.1, seed 000 "reply template"):

    {code}              the access code
    {valid_until}       when the code stops being valid, "YYYY-MM-DD HH:MM" in the service's
                        time zone, "-" when it does not expire by time
    {uses}              how many successful checks the code allows
    {validity_minutes}  the validity period in minutes
    {service}           the service's name
    {msisdn}            the subscriber's number, digits only

An unknown placeholder is refused when the template is provisioned, not when an MO arrives.
The parser is our own: ``str.format`` on merchant input would let ``{code.__class__}`` reach
into objects. A template is also checked once against its worst-case rendering so that no
reply can exceed its SMS part budget (``check_fits``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Final

from smsgate.domain.errors import InvalidTemplate, TemplateTooLong
from smsgate.domain.text import Concat, Segmentation, count_parts, segment

__all__ = [
    "NO_EXPIRY",
    "PLACEHOLDERS",
    "VALID_UNTIL_FORMAT",
    "Placeholder",
    "ReplyTemplate",
    "check_fits",
    "format_valid_until",
    "parse_template",
    "render",
    "worst_case_values",
]

PLACEHOLDERS: Final = frozenset(
    {"code", "valid_until", "uses", "validity_minutes", "service", "msisdn"}
)
VALID_UNTIL_FORMAT: Final = "%Y-%m-%d %H:%M"
NO_EXPIRY: Final = "-"
_MAX_TEMPLATE: Final = 2000
_MSISDN_WORST: Final = "9" * 15  # E.164 allows at most 15 digits


@dataclass(frozen=True, slots=True)
class Placeholder:
    name: str


@dataclass(frozen=True, slots=True)
class ReplyTemplate:
    source: str
    pieces: tuple[str | Placeholder, ...]

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(p.name for p in self.pieces if isinstance(p, Placeholder))


def parse_template(
    source: str,
    *,
    allowed: frozenset[str] = PLACEHOLDERS,
    required: frozenset[str] = frozenset(),
) -> ReplyTemplate:
    """Parse a template; raises InvalidTemplate for broken braces, unknown or missing names."""
    if not source.strip():
        raise InvalidTemplate("template is empty")
    if len(source) > _MAX_TEMPLATE:
        raise InvalidTemplate(f"template is longer than {_MAX_TEMPLATE} characters")
    pieces: list[str | Placeholder] = []
    literal: list[str] = []
    index = 0
    length = len(source)
    while index < length:
        char = source[index]
        if char == "{" and source.startswith("{{", index):
            literal.append("{")
            index += 2
        elif char == "}" and source.startswith("}}", index):
            literal.append("}")
            index += 2
        elif char == "{":
            end = source.find("}", index + 1)
            if end < 0:
                raise InvalidTemplate(f"'{{' at position {index} is never closed")
            name = source[index + 1 : end]
            if name not in allowed:
                known = ", ".join(f"{{{n}}}" for n in sorted(allowed))
                raise InvalidTemplate(f"unknown placeholder {{{name}}}; known: {known}")
            if literal:
                pieces.append("".join(literal))
                literal = []
            pieces.append(Placeholder(name))
            index = end + 1
        elif char == "}":
            raise InvalidTemplate(f"'}}' at position {index} has no opening brace (write '}}}}')")
        else:
            literal.append(char)
            index += 1
    if literal:
        pieces.append("".join(literal))
    template = ReplyTemplate(source=source, pieces=tuple(pieces))
    missing = required - template.placeholders
    if missing:
        names = ", ".join(f"{{{n}}}" for n in sorted(missing))
        raise InvalidTemplate(f"template must contain {names}")
    return template


def render(template: ReplyTemplate, values: Mapping[str, str]) -> str:
    """Fill the placeholders. A value the template needs but ``values`` lacks is a bug in the
    caller, reported as InvalidTemplate naming it."""
    out: list[str] = []
    for piece in template.pieces:
        if isinstance(piece, Placeholder):
            try:
                out.append(values[piece.name])
            except KeyError:
                raise InvalidTemplate(f"no value for {{{piece.name}}}") from None
        else:
            out.append(piece)
    return "".join(out)


def format_valid_until(when: datetime | None, tz: tzinfo) -> str:
    """``{valid_until}`` as shown to the subscriber: local time of the service, to the minute."""
    if when is None:
        return NO_EXPIRY
    return when.astimezone(tz).strftime(VALID_UNTIL_FORMAT)


def worst_case_values(
    *,
    code_length: int = 0,
    uses: int | None = None,
    validity_minutes: int | None = None,
    service: str = "",
) -> dict[str, str]:
    """The longest value each placeholder can take for a service's settings.

    Code symbols, dates and digits are all one GSM septet (one UCS-2 unit) each, so only the
    lengths matter; the service name is used as is because it can change the encoding.
    """
    return {
        "code": "W" * code_length,
        "valid_until": "9999-12-31 23:59",
        "uses": str(uses) if uses is not None else "0",
        "validity_minutes": str(validity_minutes) if validity_minutes is not None else "0",
        "service": service,
        "msisdn": _MSISDN_WORST,
    }


def check_fits(
    template: ReplyTemplate,
    worst_case: Mapping[str, str],
    *,
    max_parts: int = 1,
    concat: Concat = Concat.UDH8,
) -> Segmentation:
    """Segment the worst-case rendering; raises TemplateTooLong past ``max_parts``."""
    text = render(template, worst_case)
    parts = count_parts(text, concat=concat)
    if parts > max_parts:
        raise TemplateTooLong(
            f"the reply can need {parts} SMS parts, at most {max_parts} allowed",
            parts=parts,
            max_parts=max_parts,
        )
    return segment(text, concat=concat, max_parts=max_parts)
