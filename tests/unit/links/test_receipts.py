from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from smsgate.domain.receipts import (
    canonical_receipt_id,
    canonical_submit_id,
    parse_receipt_date,
    parse_receipt_text,
    receipt_from,
)

APPENDIX_B = (
    "id:0123456789 sub:001 dlvrd:001 submit date:2611220230 done date:2611220231"
    " stat:DELIVRD err:000 text:Hello world"
)


def test_appendix_b_text_is_read_field_by_field() -> None:
    parsed = parse_receipt_text(APPENDIX_B)
    assert parsed is not None
    assert parsed.id == "0123456789"
    assert parsed.sub == "001"
    assert parsed.dlvrd == "001"
    assert parsed.submit_date == "2611220230"
    assert parsed.done_date == "2611220231"
    assert parsed.stat == "DELIVRD"
    assert parsed.err == "000"
    assert parsed.text == "Hello world"


def test_upper_case_keys_other_order_and_missing_fields() -> None:
    parsed = parse_receipt_text("STAT:UNDELIV ID:ab12 ERR:012")
    assert parsed is not None
    assert (parsed.id, parsed.stat, parsed.err, parsed.text) == ("ab12", "UNDELIV", "012", "")


def test_text_sample_may_hold_words_that_look_like_keys() -> None:
    parsed = parse_receipt_text("id:7 stat:DELIVRD err:000 text:stat:REJECTD id:9")
    assert parsed is not None
    assert (parsed.id, parsed.stat, parsed.text) == ("7", "DELIVRD", "stat:REJECTD id:9")


def test_not_a_receipt() -> None:
    assert parse_receipt_text("hello there") is None
    assert parse_receipt_text("id:5 no state here") is None
    assert parse_receipt_text("") is None


def test_dates_with_and_without_seconds() -> None:
    assert parse_receipt_date("2611220231") == datetime(2026, 11, 22, 2, 31, tzinfo=UTC)
    assert parse_receipt_date("261122023107") == datetime(2026, 11, 22, 2, 31, 7, tzinfo=UTC)
    assert parse_receipt_date("26112") is None
    assert parse_receipt_date("2613220231") is None  # month 13


def test_ids_compared_as_received_without_a_format() -> None:
    assert canonical_submit_id("00AB", None) == "00AB"
    assert canonical_receipt_id(" 00AB ", None) == "00AB"


def test_hex_receipts_match_decimal_responses() -> None:
    assert canonical_submit_id("536870912", "hex") == canonical_receipt_id("20000000", "hex")
    assert canonical_receipt_id("20000000", "hex") == "536870912"


def test_decimal_receipts_match_hex_responses() -> None:
    assert canonical_submit_id("1f", "dec") == canonical_receipt_id("31", "dec")
    assert canonical_submit_id("00001F", "dec") == "31"


def test_a_receipt_id_with_letters_is_hex_whatever_the_setting() -> None:
    assert canonical_receipt_id("ff", "dec") == "255"


def test_ids_that_are_not_numbers_stay_as_they_are() -> None:
    assert canonical_submit_id("msg-1", "hex") == "msg-1"
    assert canonical_receipt_id("x" * 50, "dec") == "x" * 50


@given(st.integers(min_value=0, max_value=2**64))
def test_both_settings_round_trip_any_number(number: int) -> None:
    assert canonical_submit_id(str(number), "hex") == canonical_receipt_id(
        format(number, "x"), "hex"
    )
    assert canonical_submit_id(format(number, "X"), "dec") == canonical_receipt_id(
        str(number), "dec"
    )


def test_receipt_from_text_only() -> None:
    receipt = receipt_from(text=APPENDIX_B, receipted_message_id=None, message_state=None)
    assert receipt is not None
    assert (receipt.message_id, receipt.state, receipt.error_code) == (
        "0123456789",
        "delivered",
        "",
    )
    assert receipt.done_at == datetime(2026, 11, 22, 2, 31, tzinfo=UTC)


def test_tlvs_win_over_the_text() -> None:
    receipt = receipt_from(
        text="id:1 stat:DELIVRD err:000",
        receipted_message_id="2a",
        message_state=5,
        network_error_code=bytes([3, 0, 27]),
        dlr_id_format="hex",
    )
    assert receipt is not None
    assert (receipt.message_id, receipt.raw_id, receipt.state) == ("42", "2a", "undelivered")
    assert receipt.error_code == "3:27"


def test_tlvs_without_any_text() -> None:
    receipt = receipt_from(text="", receipted_message_id="99", message_state=2)
    assert receipt is not None
    assert (receipt.message_id, receipt.state) == ("99", "delivered")


def test_the_err_field_is_kept_when_it_says_something() -> None:
    receipt = receipt_from(
        text="id:9 stat:UNDELIV err:034", receipted_message_id=None, message_state=None
    )
    assert receipt is not None
    assert (receipt.state, receipt.error_code) == ("undelivered", "034")


def test_no_id_or_no_state_is_no_receipt() -> None:
    assert receipt_from(text="hello", receipted_message_id=None, message_state=None) is None
    assert receipt_from(text="hello", receipted_message_id="5", message_state=None) is None


@given(st.text(max_size=200))
def test_parser_never_raises(text: str) -> None:
    parse_receipt_text(text)
    receipt_from(text=text, receipted_message_id=None, message_state=None, dlr_id_format="dec")
