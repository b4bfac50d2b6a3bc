"""Access codes: alphabets, generation, and validity at the boundaries of each kind."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsgate.domain.access_codes import (
    ALNUM,
    DIGITS,
    LETTERS,
    LOOK_ALIKES,
    CheckOutcome,
    CodeAlphabet,
    CodeKind,
    CodeRules,
    CodeStatus,
    check,
    code_status,
    expires_at,
    generate_code,
    is_well_formed,
    issue,
    normalize_code_input,
    redeem,
)
from smsgate.domain.clock import FakeClock
from smsgate.domain.errors import InvalidCodeRules

HOUR = timedelta(hours=1)
TICK = timedelta(microseconds=1)


class TestAlphabets:
    def test_no_look_alikes_anywhere(self) -> None:
        for symbols in (DIGITS, LETTERS, ALNUM):
            assert not set(symbols) & LOOK_ALIKES
            assert not set(symbols) & set("1IO0QL")

    def test_alnum_drops_letters_that_pass_for_its_digits(self) -> None:
        assert not set(ALNUM) & set("SZB")
        assert set("258") <= set(ALNUM)

    def test_sizes_and_no_repeats(self) -> None:
        assert (len(DIGITS), len(LETTERS), len(ALNUM)) == (8, 22, 27)
        for symbols in (DIGITS, LETTERS, ALNUM):
            assert len(set(symbols)) == len(symbols)
            assert symbols == symbols.upper()

    def test_alphabet_enum(self) -> None:
        assert CodeAlphabet("digits").symbols == DIGITS
        assert not CodeAlphabet.DIGITS.has_letters
        assert CodeAlphabet.ALNUM.has_letters


class TestGeneration:
    @settings(deadline=None)
    @given(
        st.sampled_from(list(CodeAlphabet)),
        st.integers(4, 32),
        st.randoms(use_true_random=False),
    )
    def test_codes_have_the_shape_of_their_rules(
        self, alphabet: CodeAlphabet, length: int, rnd: random.Random
    ) -> None:
        rules = CodeRules(CodeKind.USES, length=length, alphabet=alphabet, uses=1)
        code = generate_code(rules, rnd)
        assert len(code) == length
        assert set(code) <= set(alphabet.symbols)
        assert is_well_formed(code, rules)

    def test_injected_source_is_reproducible(self) -> None:
        rules = CodeRules(CodeKind.USES, uses=1)
        assert generate_code(rules, random.Random(7)) == generate_code(rules, random.Random(7))

    def test_default_source_is_the_system_one(self) -> None:
        rules = CodeRules(CodeKind.USES, length=16, uses=1)
        codes = {generate_code(rules) for _ in range(50)}
        assert len(codes) == 50

    def test_every_symbol_is_used(self) -> None:
        rules = CodeRules(CodeKind.USES, length=32, alphabet=CodeAlphabet.ALNUM, uses=1)
        rnd = random.Random(1)
        seen = set("".join(generate_code(rules, rnd) for _ in range(100)))
        assert seen == set(ALNUM)

    def test_code_space(self) -> None:
        rules = CodeRules(CodeKind.USES, length=4, alphabet=CodeAlphabet.DIGITS, uses=1)
        assert rules.code_space == 8**4


class TestNormaliseInput:
    @pytest.mark.parametrize(
        ("raw", "alphabet", "expected"),
        [
            (" ab cd ", CodeAlphabet.ALNUM, "ABCD"),
            ("ab\tcd\n", CodeAlphabet.LETTERS, "ABCD"),
            ("２３４５", CodeAlphabet.DIGITS, "2345"),
            ("k7\u00a0x", None, "K7X"),
        ],
    )
    def test_normalise(self, raw: str, alphabet: CodeAlphabet | None, expected: str) -> None:
        assert normalize_code_input(raw, alphabet) == expected

    def test_ill_formed(self) -> None:
        rules = CodeRules(CodeKind.USES, length=4, alphabet=CodeAlphabet.DIGITS, uses=1)
        assert not is_well_formed("2345A", rules)
        assert not is_well_formed("2301", rules)
        assert not is_well_formed("234", rules)


class TestRules:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"kind": CodeKind.USES, "uses": 0},
            {"kind": CodeKind.USES},
            {"kind": CodeKind.PERIOD_FROM_ISSUE},
            {"kind": CodeKind.PERIOD_FROM_FIRST_USE, "validity": timedelta(0)},
            {"kind": CodeKind.USES, "uses": 1, "length": 3},
            {"kind": CodeKind.USES, "uses": 1, "length": 33},
            {"kind": CodeKind.USES, "uses": 1, "lifetime": timedelta(seconds=-1)},
        ],
    )
    def test_unusable_rules(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(InvalidCodeRules):
            CodeRules(**kwargs)  # type: ignore[arg-type]

    def test_from_settings_of_the_provisioning_example(self) -> None:
        rules = CodeRules.from_settings(
            kind="uses", length=8, alphabet="alnum", validity_seconds=3600, uses=1
        )
        assert rules == CodeRules(CodeKind.USES, length=8, alphabet=CodeAlphabet.ALNUM, uses=1)

    def test_from_settings_period(self) -> None:
        rules = CodeRules.from_settings(
            kind="period_from_issue", validity_seconds=600, uses=5, lifetime_seconds=900
        )
        assert rules.validity == timedelta(minutes=10)
        assert rules.uses is None
        assert rules.lifetime == timedelta(minutes=15)

    @pytest.mark.parametrize(("kind", "alphabet"), [("forever", "alnum"), ("uses", "hex")])
    def test_from_settings_unknown_names(self, kind: str, alphabet: str) -> None:
        with pytest.raises(InvalidCodeRules):
            CodeRules.from_settings(kind=kind, alphabet=alphabet, uses=1)


class TestPeriodFromIssue:
    def test_valid_until_the_last_instant(self) -> None:
        clock = FakeClock()
        rules = CodeRules(CodeKind.PERIOD_FROM_ISSUE, validity=HOUR)
        state = issue(rules, clock.now())
        assert expires_at(state) == clock.now() + HOUR
        clock.set(state.issued_at + HOUR - TICK)
        result = redeem(state, rules, clock.now())
        assert result.outcome is CheckOutcome.OK
        assert result.state.uses_count == 1
        assert result.state.first_used_at == clock.now()
        clock.set(state.issued_at + HOUR)
        assert check(result.state, clock.now()) is CheckOutcome.EXPIRED
        assert code_status(result.state, clock.now()) is CodeStatus.EXPIRED

    def test_uses_do_not_extend_the_period(self) -> None:
        clock = FakeClock()
        rules = CodeRules(CodeKind.PERIOD_FROM_ISSUE, validity=HOUR)
        state = issue(rules, clock.now())
        clock.advance(1800)
        state = redeem(state, rules, clock.now()).state
        assert state.valid_until == state.issued_at + HOUR

    def test_expired_check_leaves_state_alone(self) -> None:
        clock = FakeClock()
        rules = CodeRules(CodeKind.PERIOD_FROM_ISSUE, validity=HOUR)
        state = issue(rules, clock.now())
        clock.advance(3600)
        result = redeem(state, rules, clock.now())
        assert result.outcome is CheckOutcome.EXPIRED
        assert result.state == state


class TestPeriodFromFirstUse:
    def test_period_starts_at_first_successful_check(self) -> None:
        clock = FakeClock()
        rules = CodeRules(CodeKind.PERIOD_FROM_FIRST_USE, validity=HOUR)
        state = issue(rules, clock.now())
        assert state.valid_until is None
        assert expires_at(state) is None
        clock.advance(86400 * 30)  # unused for a month: still fine without a lifetime
        first = redeem(state, rules, clock.now())
        assert first.outcome is CheckOutcome.OK
        assert first.state.first_used_at == clock.now()
        assert first.state.valid_until == clock.now() + HOUR
        clock.advance(3600 - 0.000001)
        second = redeem(first.state, rules, clock.now())
        assert second.outcome is CheckOutcome.OK
        assert second.state.first_used_at == first.state.first_used_at
        assert second.state.valid_until == first.state.valid_until
        assert second.state.uses_count == 2
        clock.advance(0.000001)
        assert redeem(second.state, rules, clock.now()).outcome is CheckOutcome.EXPIRED

    def test_lifetime_ends_an_unused_code(self) -> None:
        clock = FakeClock()
        rules = CodeRules(CodeKind.PERIOD_FROM_FIRST_USE, validity=HOUR, lifetime=24 * HOUR)
        state = issue(rules, clock.now())
        assert expires_at(state) == clock.now() + 24 * HOUR
        clock.set(state.issued_at + 24 * HOUR - TICK)
        assert check(state, clock.now()) is CheckOutcome.OK
        clock.set(state.issued_at + 24 * HOUR)
        assert check(state, clock.now()) is CheckOutcome.EXPIRED

    def test_lifetime_caps_a_period_started_late(self) -> None:
        clock = FakeClock()
        rules = CodeRules(CodeKind.PERIOD_FROM_FIRST_USE, validity=HOUR, lifetime=24 * HOUR)
        state = issue(rules, clock.now())
        clock.advance(23.5 * 3600)
        state = redeem(state, rules, clock.now()).state
        assert expires_at(state) == state.issued_at + 24 * HOUR
        clock.advance(1800)
        assert check(state, clock.now()) is CheckOutcome.EXPIRED


class TestUses:
    def test_counts_down_to_used(self) -> None:
        clock = FakeClock()
        rules = CodeRules(CodeKind.USES, uses=2)
        state = issue(rules, clock.now())
        assert state.uses_left == 2
        state = redeem(state, rules, clock.now()).state
        assert state.uses_left == 1
        assert code_status(state, clock.now()) is CodeStatus.ACTIVE
        result = redeem(state, rules, clock.now())
        assert result.outcome is CheckOutcome.OK
        assert result.state.uses_left == 0
        assert code_status(result.state, clock.now()) is CodeStatus.USED
        third = redeem(result.state, rules, clock.now())
        assert third.outcome is CheckOutcome.EXPIRED
        assert third.state.uses_left == 0
        assert third.state.uses_count == 2

    def test_time_alone_does_not_expire_without_lifetime(self) -> None:
        clock = FakeClock()
        rules = CodeRules(CodeKind.USES, uses=1)
        state = issue(rules, clock.now())
        clock.advance(86400 * 365)
        assert check(state, clock.now()) is CheckOutcome.OK

    def test_lifetime_boundary(self) -> None:
        clock = FakeClock()
        rules = CodeRules(CodeKind.USES, uses=3, lifetime=HOUR)
        state = issue(rules, clock.now())
        clock.set(state.issued_at + HOUR - TICK)
        assert check(state, clock.now()) is CheckOutcome.OK
        clock.set(state.issued_at + HOUR)
        assert check(state, clock.now()) is CheckOutcome.EXPIRED

    @settings(deadline=None)
    @given(st.integers(1, 20), st.integers(0, 40))
    def test_exactly_n_successes(self, uses: int, attempts: int) -> None:
        clock = FakeClock()
        rules = CodeRules(CodeKind.USES, uses=uses)
        state = issue(rules, clock.now())
        successes = 0
        for _ in range(attempts):
            result = redeem(state, rules, clock.now())
            successes += result.outcome is CheckOutcome.OK
            state = result.state
        assert successes == min(uses, attempts)
        assert state.uses_count == successes
