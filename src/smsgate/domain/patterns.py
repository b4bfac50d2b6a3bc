"""Approved text patterns for bulk SMS (seed 001: INVALID_PATTERN).

A service may list the texts it is allowed to send. In a pattern, ``{*}`` stands for a
variable part of one or more characters (any characters, line breaks included); everything
else must match literally, case and all. The whole text must match (anchored at both ends).
An empty list allows any text.

Matching uses no regular expressions: the pattern is split at its wildcards into literal
pieces; the text must start with the first piece and end with the last, and the middle pieces
are found in order, each at its leftmost position. For wildcards with no upper bound the
leftmost choice is always safe (it leaves the most text for the pieces after it), so a match is
decided in one left-to-right pass with no backtracking across wildcards. The cost is that of
``str.find`` over the text: linear for long pieces (CPython's two-way search) and bounded by
text length times piece length for short ones, whatever the pattern.
Text and patterns are compared in Unicode NFC so a composed and a decomposed "й" agree.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from smsgate.domain.errors import InvalidPattern

__all__ = [
    "MAX_PATTERN_LENGTH",
    "WILDCARD",
    "PatternSet",
    "TextPattern",
    "compile_pattern",
    "compile_patterns",
]

WILDCARD: Final = "{*}"
MAX_PATTERN_LENGTH: Final = 2000


@dataclass(frozen=True, slots=True)
class TextPattern:
    source: str
    pieces: tuple[str, ...]  # literal pieces; a wildcard sits between each two

    def matches(self, text: str) -> bool:
        return _matches(self.pieces, unicodedata.normalize("NFC", text))


def _matches(pieces: tuple[str, ...], text: str) -> bool:
    first = pieces[0]
    if len(pieces) == 1:
        return text == first
    if not text.startswith(first):
        return False
    position = len(first)
    for piece in pieces[1:-1]:
        # +1: the wildcard before this piece takes at least one character.
        found = text.find(piece, position + 1)
        if found < 0:
            return False
        position = found + len(piece)
    last = pieces[-1]
    return len(text) - len(last) >= position + 1 and text.endswith(last)


def compile_pattern(source: str) -> TextPattern:
    """Raises InvalidPattern for an empty or oversized pattern."""
    if not source.strip():
        raise InvalidPattern("pattern is empty")
    if len(source) > MAX_PATTERN_LENGTH:
        raise InvalidPattern(f"pattern is longer than {MAX_PATTERN_LENGTH} characters")
    normalised = unicodedata.normalize("NFC", source)
    return TextPattern(source=source, pieces=tuple(normalised.split(WILDCARD)))


@dataclass(frozen=True, slots=True)
class PatternSet:
    patterns: tuple[TextPattern, ...]

    def matches(self, text: str) -> bool:
        """True when the text matches any pattern, or when there are none."""
        if not self.patterns:
            return True
        normalised = unicodedata.normalize("NFC", text)
        return any(_matches(p.pieces, normalised) for p in self.patterns)


def compile_patterns(sources: Iterable[str]) -> PatternSet:
    return PatternSet(tuple(compile_pattern(source) for source in sources))
