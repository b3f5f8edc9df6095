from __future__ import annotations

import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plyground.types import Task
from plyground.verifiers import NumericVerifier, Verifier, extract_final_answer, parse_number

VERIFIER = NumericVerifier()


def task(answer: str | None) -> Task:
    return Task(id="t", prompt="q", answer=answer)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("So the total is \\boxed{42}.", "42"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{ 7 \\text{ apples} }", "7 \\text{ apples}"),
        ("\\boxed{5", "5"),  # an unclosed box falls back to the last number
        ("The answer is 12. I checked it 3 times.", "12"),
        ("**Answer:** -3/4", "-3/4"),
        ("answer = 1,234.5 dollars", "1,234.5"),
        ("Final answer: $\\dfrac{3}{8}$", "\\dfrac{3}{8}"),
        ("10 - 3 = 7", "7"),
        ("3-5", "5"),  # a minus glued to a digit is subtraction, not a sign
        ("it was \u22125 degrees", "-5"),  # Unicode minus
        ("$1{,}000$", "1,000"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_final_answer(text: str, answer: str | None) -> None:
    assert extract_final_answer(text) == answer


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", Fraction(42)),
        ("-42", Fraction(-42)),
        ("1,234,567", Fraction(1234567)),
        ("0.25", Fraction(1, 4)),
        ("-.5", Fraction(-1, 2)),
        ("3/4", Fraction(3, 4)),
        ("6 / 8", Fraction(3, 4)),
        ("\\frac{-1}{3}", Fraction(-1, 3)),
        ("-\\frac{1}{3}", Fraction(-1, 3)),
        ("$12$.", Fraction(12)),
        ("x = 5", Fraction(5)),
        ("50\\%", Fraction(50)),
        ("7 \\text{ apples}", Fraction(7)),
        ("1/0", None),
        ("12,34", None),
        ("2+3", None),
        ("1e5", None),
        ("", None),
        ("9" * 1000, None),
    ],
)
def test_parse_number(text: str, value: Fraction | None) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize(
    ("gold", "response", "correct", "reason"),
    [
        ("42", "\\boxed{42}", True, "correct: '42' = 42"),
        ("0.5", "\\boxed{\\frac{1}{2}}", True, "correct: '\\\\frac{1}{2}' = 0.5"),
        ("1/2", "The answer is 0.50", True, "correct: '0.50' = 1/2"),
        ("1234", "Answer: 1,234", True, "correct: '1,234' = 1234"),
        ("42", "\\boxed{41}", False, "wrong: got '41', expected 42"),
        ("3", "\\boxed{2+3}", False, "could not parse the answer '2+3'"),  # no partial read of a box
        ("3", "I give up", False, "no final answer found"),
    ],
)
def test_verify(gold: str, response: str, correct: bool, reason: str) -> None:
    verdict = VERIFIER.verify(task(gold), response)
    assert (verdict.score, verdict.correct, verdict.reason, verdict.error) == (float(correct), correct, reason, None)
    assert 0 <= verdict.elapsed_s < 1


@pytest.mark.parametrize(
    ("gold", "error"),
    [(None, "no reference answer"), ("seven", "reference answer 'seven' is not a number")],
)
def test_a_bad_reference_answer_is_an_error_not_a_wrong_answer(gold: str | None, error: str) -> None:
    verdict = VERIFIER.verify(task(gold), "\\boxed{7}")
    assert (verdict.correct, verdict.error) == (False, error)


def test_it_is_a_verifier() -> None:
    assert isinstance(VERIFIER, Verifier)


@pytest.mark.parametrize(
    "response",
    ["1" * 10_000, "\\boxed{" * 3_000, "1," * 5_000, "answer is " * 2_000, "-" * 10_000, "{" * 10_000, "x" * 1_000_000],
)
def test_adversarial_input_stays_fast(response: str) -> None:
    start = time.perf_counter()
    verdict = VERIFIER.verify(task("1"), response)
    assert time.perf_counter() - start < 1.0  # linear-time parsing; a blow-up would take far longer
    assert verdict.error is None


def test_only_the_end_of_a_long_response_is_read() -> None:
    assert VERIFIER.verify(task("5"), "\\boxed{7}" + "." * 20_000 + " so 5").correct


# -- properties --------------------------------------------------------------------------------
INT_FORMATS = [
    "{n}",
    "\\boxed{{{n}}}",
    "The answer is {n}.",
    "Answer: {n}",
    "$ {n} $",
    "\\boxed{{{comma}}}",
    "so the result is {comma}",
    "First 3 + 4 = 7, then... The final answer is \\boxed{{{n}}}",
    "\\boxed{{{n}.0}}",
]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(-(10**12), 10**12), fmt=st.sampled_from(INT_FORMATS))
def test_integers_round_trip(n: int, fmt: str) -> None:
    response = fmt.format(n=n, comma=f"{n:,}")
    answer = extract_final_answer(response)
    assert answer is not None and parse_number(answer) == n
    assert VERIFIER.verify(task(str(n)), response).correct
    assert not VERIFIER.verify(task(str(n + 1)), response).correct


def written(value: Fraction, form: str) -> str:
    sign, p, q = ("-" if value < 0 else ""), abs(value.numerator), value.denominator
    return {
        "slash": f"{sign}{p}/{q}",
        "frac": f"{sign}\\frac{{{p}}}{{{q}}}",
        "inner": f"\\frac{{{sign}{p}}}{{{q}}}",
        "unreduced": f"{sign}{3 * p}/{3 * q}",
    }[form]


@settings(max_examples=120, deadline=None)
@given(
    value=st.fractions(min_value=-(10**6), max_value=10**6, max_denominator=10**4),
    form=st.sampled_from(["slash", "frac", "inner", "unreduced"]),
    wrapper=st.sampled_from(["{}", "\\boxed{{{}}}", "The answer is {}.", "Answer: ${}$"]),
)
def test_fractions_round_trip(value: Fraction, form: str, wrapper: str) -> None:
    response = wrapper.format(written(value, form))
    answer = extract_final_answer(response)
    assert answer is not None and parse_number(answer) == value, (response, answer)
    assert VERIFIER.verify(task(str(value)), response).correct  # gold written as "p/q"


@settings(max_examples=100, deadline=None)
@given(numerator=st.integers(-(10**9), 10**9), places=st.integers(0, 6))
def test_decimals_round_trip(numerator: int, places: int) -> None:
    value = Fraction(numerator, 10**places)
    text = f"{'-' if value < 0 else ''}{abs(numerator) // 10**places}" + (
        f".{abs(numerator) % 10**places:0{places}d}" if places else ""
    )
    assert parse_number(text) == value
    assert VERIFIER.verify(task(str(value)), f"\\boxed{{{text}}}").correct


@settings(max_examples=300, deadline=None)
@given(response=st.text(), gold=st.one_of(st.none(), st.text(max_size=20), st.integers().map(str)))
def test_never_raises_on_arbitrary_text(response: str, gold: str | None) -> None:
    verdict = VERIFIER.verify(task(gold), response)
    assert verdict.score in (0.0, 1.0) and verdict.correct is (verdict.score == 1.0)
    extract_final_answer(response)
    parse_number(response)


@settings(max_examples=100, deadline=None)
@given(response=st.text(alphabet="0123456789-,./\\boxed{}frac answeris: $", max_size=400))
def test_never_raises_on_number_like_text(response: str) -> None:
    verdict = VERIFIER.verify(task("1/2"), response)
    assert verdict.error is None
