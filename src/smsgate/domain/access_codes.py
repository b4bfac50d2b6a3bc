"""Access codes (seed 000, DESIGN §1.1): their alphabets, generation and validity.

Alphabets. Seed 000 promises that look-alike characters never appear in a code, naming
``1 I O 0 Q``; ``L`` goes too (l/1/I). Inside an alphanumeric code the letters that pass for
digits also go, keeping the digit: ``S`` (5), ``Z`` (2), ``B`` (8). A one-kind code has no
partner to be confused with, so letters-only keeps S Z B and digits-only keeps 2 5 8.
U and V stay: phones render them distinctly and dropping them costs more space than it saves.

    digits   23456789                        8 symbols
    letters  ABCDEFGHJKMNPRSTUVWXYZ          22 symbols
    alnum    23456789ACDEFGHJKMNPRTUVWXY     27 symbols

Codes are upper case; what a subscriber types is normalised (spaces dropped, upper-cased)
before lookup. Each symbol is drawn with ``secrets.SystemRandom`` unless a test injects a
seeded source.

Kinds, with ``now`` always passed in (validity windows are half-open: a code that is valid for
an hour from 12:00 is valid at 12:59:59.999999 and expired at 13:00):
- ``period_from_issue``: valid for ``validity`` from issue;
- ``period_from_first_use``: valid from issue until first used, then for ``validity`` from
  that first successful check;
- ``uses``: valid for ``uses`` successful checks.
Any kind may also have a ``lifetime``: an absolute end counted from issue (so an unused
period_from_first_use code does not live forever). Every successful check is a use: it
counts ``uses_count`` and sets ``first_used_at``.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol

from smsgate.domain.errors import InvalidCodeRules

__all__ = [
    "ALNUM",
    "DIGITS",
    "LETTERS",
    "LOOK_ALIKES",
    "MAX_CODE_LENGTH",
    "MIN_CODE_LENGTH",
    "CheckOutcome",
    "CodeAlphabet",
    "CodeKind",
    "CodeRules",
    "CodeState",
    "CodeStatus",
    "RandomSource",
    "Redemption",
    "check",
    "code_status",
    "expires_at",
    "generate_code",
    "is_well_formed",
    "issue",
    "normalize_code_input",
    "redeem",
    "use",
]

DIGITS: Final = "23456789"
LETTERS: Final = "ABCDEFGHJKMNPRSTUVWXYZ"
ALNUM: Final = "23456789ACDEFGHJKMNPRTUVWXY"
LOOK_ALIKES: Final = frozenset("01IOQL")  # never in any alphabet

MIN_CODE_LENGTH: Final = 4
MAX_CODE_LENGTH: Final = 32  # access_codes.code is String(32)


class CodeAlphabet(StrEnum):
    DIGITS = "digits"
    LETTERS = "letters"
    ALNUM = "alnum"

    @property
    def symbols(self) -> str:
        return {"digits": DIGITS, "letters": LETTERS, "alnum": ALNUM}[self.value]

    @property
    def has_letters(self) -> bool:
        return self is not CodeAlphabet.DIGITS


class CodeKind(StrEnum):
    PERIOD_FROM_ISSUE = "period_from_issue"
    PERIOD_FROM_FIRST_USE = "period_from_first_use"
    USES = "uses"


@dataclass(frozen=True, slots=True)
class CodeRules:
    """A service's code settings; the constructor refuses unusable ones (InvalidCodeRules)."""

    kind: CodeKind
    length: int = 8
    alphabet: CodeAlphabet = CodeAlphabet.ALNUM
    validity: timedelta | None = None  # required by the two period kinds
    uses: int | None = None  # required by the uses kind
    lifetime: timedelta | None = None  # optional absolute end from issue, any kind

    def __post_init__(self) -> None:
        if not MIN_CODE_LENGTH <= self.length <= MAX_CODE_LENGTH:
            raise InvalidCodeRules(
                f"code length {self.length} outside {MIN_CODE_LENGTH}..{MAX_CODE_LENGTH}"
            )
        if self.kind is not CodeKind.USES:
            if self.validity is None or self.validity <= timedelta(0):
                raise InvalidCodeRules(f"{self.kind} needs a positive validity")
        elif self.uses is None or self.uses < 1:
            raise InvalidCodeRules("uses needs a number of uses of at least 1")
        if self.lifetime is not None and self.lifetime <= timedelta(0):
            raise InvalidCodeRules("lifetime must be positive when set")

    @classmethod
    def from_settings(
        cls,
        *,
        kind: str,
        length: int = 8,
        alphabet: str = "alnum",
        validity_seconds: int | None = None,
        uses: int | None = None,
        lifetime_seconds: int | None = None,
    ) -> CodeRules:
        """From the provisioning file's flat keys (``code_kind``, ``code_length`` …).

        Settings the kind does not use are dropped rather than refused, so an entry that
        carries ``validity_seconds`` next to ``code_kind = "uses"`` stays loadable.
        """
        try:
            code_kind = CodeKind(kind)
            code_alphabet = CodeAlphabet(alphabet)
        except ValueError as exc:
            raise InvalidCodeRules(str(exc)) from exc
        period = code_kind is not CodeKind.USES
        return cls(
            kind=code_kind,
            length=length,
            alphabet=code_alphabet,
            validity=(
                timedelta(seconds=validity_seconds)
                if period and validity_seconds is not None
                else None
            ),
            uses=None if period else uses,
            lifetime=timedelta(seconds=lifetime_seconds) if lifetime_seconds else None,
        )

    @property
    def code_space(self) -> int:
        """How many distinct codes the rules can produce."""
        size: int = len(self.alphabet.symbols) ** self.length
        return size


class RandomSource(Protocol):
    """What generation needs from a random source: ``secrets.SystemRandom`` or, in tests,
    a seeded ``random.Random``."""

    def choice(self, seq: Sequence[str], /) -> str: ...


_SYSTEM_RANDOM: Final = secrets.SystemRandom()


def generate_code(rules: CodeRules, rng: RandomSource | None = None) -> str:
    """A fresh code. Uniqueness per service is the store's unique key: on a clash the caller
    draws again."""
    source = rng if rng is not None else _SYSTEM_RANDOM
    symbols = rules.alphabet.symbols
    return "".join(source.choice(symbols) for _ in range(rules.length))


def normalize_code_input(raw: str, alphabet: CodeAlphabet | None = None) -> str:
    """What a subscriber typed, as stored: full-width forms folded, every space dropped,
    upper-cased when the alphabet has letters (or is not known)."""
    text = "".join(unicodedata.normalize("NFKC", raw).split())
    if alphabet is None or alphabet.has_letters:
        return text.upper()
    return text


def is_well_formed(code: str, rules: CodeRules) -> bool:
    """True when the (normalised) code could have been generated under these rules."""
    symbols = rules.alphabet.symbols
    return len(code) == rules.length and all(char in symbols for char in code)


# -- validity ----------------------------------------------------------------------------------


class CheckOutcome(StrEnum):
    OK = "ok"
    EXPIRED = "expired"  # out of time or out of uses: seed 000 answers CODE_EXPIRED for both


class CodeStatus(StrEnum):
    """The access_codes.status column."""

    ACTIVE = "active"
    EXPIRED = "expired"
    USED = "used"


@dataclass(frozen=True, slots=True)
class CodeState:
    """The mutable facts of one issued code, field for field as access_codes stores them."""

    kind: CodeKind
    issued_at: datetime
    valid_until: datetime | None = None  # end of the validity period once known
    lifetime_until: datetime | None = None  # absolute end, when the service sets a lifetime
    first_used_at: datetime | None = None
    uses_left: int | None = None  # uses kind only
    uses_count: int = 0


@dataclass(frozen=True, slots=True)
class Redemption:
    outcome: CheckOutcome
    state: CodeState  # after the use when outcome is OK, unchanged otherwise


def issue(rules: CodeRules, now: datetime) -> CodeState:
    """The state of a code generated at ``now``."""
    return CodeState(
        kind=rules.kind,
        issued_at=now,
        valid_until=(
            now + rules.validity
            if rules.kind is CodeKind.PERIOD_FROM_ISSUE and rules.validity is not None
            else None
        ),
        lifetime_until=now + rules.lifetime if rules.lifetime is not None else None,
        uses_left=rules.uses if rules.kind is CodeKind.USES else None,
    )


def expires_at(state: CodeState) -> datetime | None:
    """The first instant at which the code is no longer valid by time (None: not by time).

    This is ``{valid_until}`` in a reply: for a period_from_first_use code before its first
    use it is only the lifetime end, if any.
    """
    valid_until, lifetime_until = state.valid_until, state.lifetime_until
    if valid_until is None:
        return lifetime_until
    if lifetime_until is None or valid_until <= lifetime_until:
        return valid_until
    return lifetime_until


def code_status(state: CodeState, now: datetime) -> CodeStatus:
    if state.kind is CodeKind.USES and state.uses_left is not None and state.uses_left <= 0:
        return CodeStatus.USED
    end = expires_at(state)
    if end is not None and now >= end:
        return CodeStatus.EXPIRED
    return CodeStatus.ACTIVE


def check(state: CodeState, now: datetime) -> CheckOutcome:
    """Would a check at ``now`` succeed? (No state change; see ``redeem``.)"""
    return CheckOutcome.OK if code_status(state, now) is CodeStatus.ACTIVE else CheckOutcome.EXPIRED


def use(state: CodeState, rules: CodeRules, now: datetime) -> CodeState:
    """The state after a successful check at ``now``. Call only after ``check`` said OK.

    The first use of a period_from_first_use code starts its period from ``rules.validity``
    (the service's current setting).
    """
    first_use = state.first_used_at is None
    valid_until = state.valid_until
    if first_use and state.kind is CodeKind.PERIOD_FROM_FIRST_USE and rules.validity is not None:
        valid_until = now + rules.validity
    uses_left = state.uses_left
    if state.kind is CodeKind.USES and uses_left is not None:
        uses_left -= 1
    # The constructor, not dataclasses.replace: this runs on every successful check.
    return CodeState(
        kind=state.kind,
        issued_at=state.issued_at,
        valid_until=valid_until,
        lifetime_until=state.lifetime_until,
        first_used_at=now if first_use else state.first_used_at,
        uses_left=uses_left,
        uses_count=state.uses_count + 1,
    )


def redeem(state: CodeState, rules: CodeRules, now: datetime) -> Redemption:
    """Check and, when valid, use: the one transition a code check performs."""
    outcome = check(state, now)
    if outcome is not CheckOutcome.OK:
        return Redemption(outcome, state)
    return Redemption(outcome, use(state, rules, now))
