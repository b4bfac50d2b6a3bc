"""Which service an incoming MO belongs to: its short number and its keyword.

The keyword is the first word of the MO text, compared without regard to case, width or
invisible formatting: the text is NFKC-normalised (full-width and compatibility forms fold
to their plain letters), format characters such as zero-width spaces are removed, the first
whitespace-separated word is taken, punctuation around it is trimmed ("STOP." is "stop"), and
it is case-folded (Cyrillic included: "Код" == "КОД" == "код"). Look-alike letters of
different scripts are *not* merged: Latin "KOD" and Cyrillic "КОД" are different keywords.

Matching, for an MO sent to short number N with keyword K:
1. the service on N whose keyword equals K;
2. otherwise the service on N with an empty keyword: a catch-all for that number, so a number
   dedicated to one service bills and answers whatever the subscriber typed;
3. otherwise none (the gateway answers with the number's default reply).
Two services with the same keyword on one number are a provisioning error
(``find_conflicts``); if one slips through, the lowest service id wins, so the choice at
least never changes from one MO to the next.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from smsgate.domain.errors import InvalidKeyword

__all__ = [
    "RouteCandidate",
    "find_conflicts",
    "keyword_of",
    "normalize_keyword",
    "normalize_short_number",
    "pick_service",
    "split_keyword",
]

_MAX_KEYWORD: int = 64  # mo_messages.keyword / services.keyword column width


def _prepare(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    # Cf: zero-width space/joiners, BOM, bidi marks; phones and copy-paste insert them.
    return "".join(char for char in text if unicodedata.category(char) != "Cf")


def _fold(word: str) -> str:
    # Canonical caseless matching (Unicode §3.13): case folding can leave a sequence that
    # normalises differently (upper-cased Greek with combining marks), so normalise again.
    return unicodedata.normalize("NFKC", word.casefold())


def _is_word_char(char: str) -> bool:
    # Letters, digits and combining marks (a trailing accent belongs to its letter).
    return unicodedata.category(char)[0] in "LNM"


def _trim(word: str) -> str:
    start, end = 0, len(word)
    while start < end and not _is_word_char(word[start]):
        start += 1
    while end > start and not _is_word_char(word[end - 1]):
        end -= 1
    return word[start:end]


def split_keyword(text: str) -> tuple[str, str]:
    """(keyword, rest): the normalised first word and the rest of the text, stripped.

    >>> split_keyword("  Kod  please send ")
    ('kod', 'please send')
    """
    prepared = _prepare(text).strip()
    if not prepared:
        return "", ""
    parts = prepared.split(maxsplit=1)
    rest = parts[1].strip() if len(parts) > 1 else ""
    return _fold(_trim(parts[0])), rest


def keyword_of(text: str) -> str:
    """The keyword of an MO: its first word, normalised ("" for an empty text)."""
    return split_keyword(text)[0]


def normalize_keyword(keyword: str) -> str:
    """A service's configured keyword in the form ``keyword_of`` produces.

    Raises InvalidKeyword for a keyword that no MO could ever match: more than one word, or
    nothing but punctuation. The empty keyword is allowed (the number's catch-all).
    """
    prepared = _prepare(keyword).strip()
    if not prepared:
        return ""
    if len(prepared.split()) > 1:
        raise InvalidKeyword(f"keyword {keyword!r} has more than one word")
    normalised = _fold(_trim(prepared))
    if not normalised:
        raise InvalidKeyword(f"keyword {keyword!r} has no letters or digits")
    if normalised != _fold(prepared):
        raise InvalidKeyword(f"keyword {keyword!r} starts or ends with punctuation")
    if len(normalised) > _MAX_KEYWORD:
        raise InvalidKeyword(f"keyword {keyword!r} is longer than {_MAX_KEYWORD} characters")
    return normalised


def normalize_short_number(number: str) -> str:
    """Short numbers compare as digits: spaces and a leading '+' are dropped."""
    return "".join(number.split()).removeprefix("+")


@dataclass(frozen=True, slots=True)
class RouteCandidate:
    short_number: str
    keyword: str  # as configured; compared after normalize_keyword
    service_id: int


def pick_service(candidates: Iterable[RouteCandidate], short_number: str, text: str) -> int | None:
    """The service id for an MO to ``short_number`` with ``text``, or None (see module doc)."""
    number = normalize_short_number(short_number)
    keyword = keyword_of(text)
    exact: int | None = None
    fallback: int | None = None
    for candidate in candidates:
        if normalize_short_number(candidate.short_number) != number:
            continue
        wanted = _safe_keyword(candidate.keyword)
        if wanted is None:
            continue
        if wanted == "":
            fallback = _lowest(fallback, candidate.service_id)
        elif wanted == keyword:
            exact = _lowest(exact, candidate.service_id)
    return exact if exact is not None else fallback


def _safe_keyword(keyword: str) -> str | None:
    # A keyword that failed validation never matches instead of breaking every MO's routing.
    try:
        return normalize_keyword(keyword)
    except InvalidKeyword:
        return None


def _lowest(current: int | None, candidate: int) -> int:
    return candidate if current is None else min(current, candidate)


def find_conflicts(candidates: Iterable[RouteCandidate]) -> list[tuple[str, str, list[int]]]:
    """(short number, keyword, service ids) for every pair the same MO could reach twice.

    Provisioning refuses a configuration with any; invalid keywords raise InvalidKeyword.
    """
    seen: dict[tuple[str, str], list[int]] = {}
    for candidate in candidates:
        key = (
            normalize_short_number(candidate.short_number),
            normalize_keyword(candidate.keyword),
        )
        ids = seen.setdefault(key, [])
        if candidate.service_id not in ids:
            ids.append(candidate.service_id)
    return [(number, kw, sorted(ids)) for (number, kw), ids in seen.items() if len(ids) > 1]
