"""The gateway-wide guards: against text no storage can hold (api/deps.py), a JSON body is
refused exactly when one of its strings holds a NUL or an unpaired surrogate, whatever the
escaping around it; and the safety net for unexpected errors (api/problems.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.acceptance.fuzz.fuzz_env import Gateway, call_raw

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


async def test_an_unexpected_error_is_a_logged_problem_and_still_raised(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """The safety net: the client gets a 500 problem rather than a bare text, the log gets the
    traceback, and the error still reaches the server (and fails every test that meets it)."""

    async def broken() -> None:
        raise RuntimeError("a bug")

    gateway.app.add_api_route("/broken", broken)
    sent: list[dict[str, Any]] = []
    with pytest.raises(RuntimeError, match="a bug"):
        await call_raw(gateway.app, "GET", b"/broken", sink=sent)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 500
    assert (b"content-type", b"application/problem+json") in start["headers"]
    assert json.loads(body)["status"] == 500
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)
