"""The receipt text and ids the simulator writes, read back by the gateway's own parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgate.domain.receipts import (
    canonical_receipt_id,
    canonical_submit_id,
    parse_receipt_text,
    receipt_from,
)
from smsgate.simulator.receipts import RECEIPT_STATES, DlrSettings, ids_for, receipt_text
from smsgate.smpp.constants import MessageState

SUBMIT = datetime(2026, 3, 9, 14, 5, 59, tzinfo=UTC)
DONE = datetime(2026, 3, 9, 14, 7, 1, tzinfo=UTC)


def test_the_appendix_b_text() -> None:
    text = receipt_text(
        message_id="2a3f",
        submitted_at=SUBMIT,
        done_at=DONE,
        settings=DlrSettings(),
        text="Your code is 1234, valid for one hour",
    )
    assert text == (
        "id:2a3f sub:001 dlvrd:001 submit date:2603091405 done date:2603091407"
        " stat:DELIVRD err:000 text:Your code is 1234, v"
    )


def test_a_failure_counts_nothing_delivered() -> None:
    settings = DlrSettings(outcome="UNDELIV", error_code=7)
    text = receipt_text(
        message_id="1", submitted_at=SUBMIT, done_at=DONE, settings=settings, text="Ünïcode"
    )
    assert " dlvrd:000 " in text and text.endswith("stat:UNDELIV err:007 text:?n?code")


@pytest.mark.parametrize("outcome", list(RECEIPT_STATES))
def test_every_outcome_reads_back_as_the_same_state(outcome: str) -> None:
    settings = DlrSettings(outcome=outcome)
    text = receipt_text(
        message_id="99", submitted_at=SUBMIT, done_at=DONE, settings=settings, text="x"
    )
    by_text = receipt_from(text=text, receipted_message_id=None, message_state=None)
    by_tlv = receipt_from(text="", receipted_message_id="99", message_state=settings.message_state)
    assert by_text is not None and by_tlv is not None
    assert by_text.state == by_tlv.state
    assert by_text.message_id == "99"


@given(st.integers(min_value=0, max_value=2**64 - 1), st.sampled_from(["hex", "dec", None]))
def test_submit_and_receipt_ids_match_the_way_the_gateway_matches_them(
    number: int, dlr_id_format: str | None
) -> None:
    submit_id, receipt_id = ids_for(number, dlr_id_format)  # type: ignore[arg-type]
    fmt = dlr_id_format  # the same operator setting on both sides
    assert canonical_submit_id(submit_id, fmt) == canonical_receipt_id(receipt_id, fmt)  # type: ignore[arg-type]


def test_ids_are_in_the_base_the_setting_names() -> None:
    assert ids_for(0x2000_0000, "dec") == ("20000000", "536870912")
    assert ids_for(0x2000_0000, "hex") == ("536870912", "20000000")
    assert ids_for(0x2000_0000, None) == ("536870912", "536870912")


@pytest.mark.parametrize(
    ("registered_delivery", "outcome", "wanted"),
    [
        (0, "DELIVRD", False),
        (1, "DELIVRD", True),
        (1, "UNDELIV", True),
        (2, "DELIVRD", False),
        (2, "REJECTD", True),
        (3, "UNDELIV", False),  # reserved value
        (0x11, "DELIVRD", True),  # other bits do not matter
    ],
)
def test_receipts_only_when_asked(registered_delivery: int, outcome: str, wanted: bool) -> None:
    assert DlrSettings(outcome=outcome).wanted(registered_delivery) is wanted


@pytest.mark.parametrize("bad", [{"outcome": "LOST"}, {"delay_ms": -1}, {"error_code": 1000}])
def test_settings_are_checked(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=str(next(iter(bad)))):
        DlrSettings(**bad)  # type: ignore[arg-type]


def test_the_message_state_tlv_value() -> None:
    assert DlrSettings().message_state == MessageState.DELIVERED
    assert DlrSettings(outcome="EXPIRED").message_state == MessageState.EXPIRED
    text = receipt_text(
        message_id="5", submitted_at=SUBMIT, done_at=DONE, settings=DlrSettings(), text=""
    )
    parsed = parse_receipt_text(text)
    assert parsed is not None
    assert (parsed.submit_date, parsed.done_date) == ("2603091405", "2603091407")
