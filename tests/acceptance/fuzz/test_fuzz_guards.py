"""The gateway-wide guard against text no storage can hold (api/deps.py): a JSON body is
refused exactly when one of its strings holds a NUL or an unpaired surrogate, whatever the
escaping around it."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from smsgate.api.deps import _unstorable_escape

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

texts = st.text(
    alphabet=st.one_of(
        st.characters(codec=None),
        st.sampled_from(["\\", "u", "0", "d", "8", "\x00", "\ud83d", "\ude00", "😀", '"']),
    ),
    max_size=30,
)


def _unstorable(text: str) -> bool:
    # What the server reads: JSON joins a high and a low surrogate escape side by side into
    # one character, so only a NUL or a surrogate left alone survives the round trip.
    return bool(UNSTORABLE.search(json.loads(json.dumps(text))))


@given(st.lists(texts, max_size=4))
def test_flags_exactly_the_bodies_that_cannot_be_stored(values: list[str]) -> None:
    body = json.dumps({f"k{i}": value for i, value in enumerate(values)}).encode()
    expected = any(_unstorable(value) for value in values)
    assert _unstorable_escape(body) is expected, body
