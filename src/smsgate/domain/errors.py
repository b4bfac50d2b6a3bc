"""Errors raised by the pure domain rules.

The whole hierarchy, in one screen:

    DomainError
    ├── TextError                 SMS text could not be encoded, split or joined
    │   ├── UnencodableText       a character outside the encoding the caller insisted on
    │   ├── TextTooLong           more parts than allowed (or than 255, the UDH limit)
    │   ├── MalformedUdh          a user data header that does not parse
    │   └── InvalidConcat         concatenation reference / total / sequence out of range
    ├── InvalidMsisdn             not an international number, or not a valid one
    ├── InvalidKeyword            a service keyword that cannot be matched (provisioning)
    ├── InvalidCodeRules          access-code length / alphabet / kind settings are unusable
    ├── InvalidTemplate           unknown placeholder, unbalanced brace (provisioning)
    │   └── TemplateTooLong       the worst-case rendering needs more SMS parts than allowed
    ├── InvalidPattern            an approved-text pattern that cannot be used (provisioning)
    └── InvalidQuota              negative limits, an unknown time zone

Each error carries a human-readable message; callers map the type to their own protocol (a
seed status word, an SMPP command_status, an HTTP problem). The domain never picks the wire
answer itself.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "DomainError",
    "InvalidCodeRules",
    "InvalidConcat",
    "InvalidKeyword",
    "InvalidMsisdn",
    "InvalidPattern",
    "InvalidQuota",
    "InvalidTemplate",
    "MalformedUdh",
    "MsisdnProblem",
    "TemplateTooLong",
    "TextError",
    "TextTooLong",
    "UnencodableText",
]


class DomainError(Exception):
    """Base class of every error the domain rules raise."""


class TextError(DomainError):
    """SMS text could not be encoded, segmented or reassembled."""


class UnencodableText(TextError):
    """A character that the encoding the caller insisted on (GSM 03.38) cannot carry."""


class TextTooLong(TextError):
    """The text needs more SMS parts than the caller allows."""

    def __init__(self, message: str, *, parts: int, max_parts: int) -> None:
        super().__init__(message)
        self.parts = parts
        self.max_parts = max_parts


class MalformedUdh(TextError):
    """A user data header (3GPP TS 23.040 §9.2.3.24) that does not parse."""


class InvalidConcat(TextError):
    """A concatenation reference, total or sequence number out of its range."""


class MsisdnProblem(StrEnum):
    EMPTY = "empty"
    NOT_DIGITS = "not_digits"
    NOT_INTERNATIONAL = "not_international"
    INVALID = "invalid"


class InvalidMsisdn(DomainError):
    """The number is not in international format or is not a valid phone number."""

    def __init__(self, message: str, *, problem: MsisdnProblem) -> None:
        super().__init__(message)
        self.problem = problem


class InvalidKeyword(DomainError):
    """A service keyword that an MO could never match (e.g. two words)."""


class InvalidCodeRules(DomainError):
    """Access-code settings that cannot produce usable codes."""


class InvalidTemplate(DomainError):
    """A reply template with an unknown placeholder or broken brace syntax."""


class TemplateTooLong(InvalidTemplate):
    """The worst-case rendering of a template needs more SMS parts than allowed."""

    def __init__(self, message: str, *, parts: int, max_parts: int) -> None:
        super().__init__(message)
        self.parts = parts
        self.max_parts = max_parts


class InvalidPattern(DomainError):
    """An approved-text pattern that cannot be used."""


class InvalidQuota(DomainError):
    """Quota settings that cannot be applied (negative limit, unknown time zone)."""
