from fractions import Fraction

import pytest

from toolrl_jax.data.expressions import ExpressionError, calculate, evaluate, format_number
from toolrl_jax.verifiers import (
    extract_answer,
    grade,
    normalize_answer,
    parse_number,
    verify_math,
    verify_qa,
)


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("437*86", "37582"),
        ("1234+567+89+4021", "5911"),
        ("80000*1.5", "120000"),  # exact, no float artefact
        ("0.1+0.2", "0.3"),
        ("2/3", "0.666666666666667"),
        ("-(3-5)**2", "-4"),
        ("7//2 + 7%2", "4"),
    ],
)
def test_calculate_golden(expr, expected):
    assert calculate(expr) == expected


@pytest.mark.parametrize("expr", ["437*86", "80000*1.5", "0.1+0.2", "2/3", "7/4", "10/4*3",
                                  "-(3-5)**2", "1234+567+89+4021"])
def test_calculate_matches_the_calculator_tool(expr):
    from toolrl_jax.tools.calculator import CalculatorTool

    result = CalculatorTool().call({"expression": expr})
    assert calculate(expr) == result.text


def test_evaluate_is_exact():
    assert evaluate("1.1*3") == Fraction(33, 10)


@pytest.mark.parametrize("expr", ["__import__('os')", "a+1", "2**1000", "1/0", "3*", "[1]"])
def test_evaluate_rejects(expr):
    with pytest.raises(ExpressionError):
        evaluate(expr)


def test_format_number():
    assert format_number(Fraction(10, 2)) == "5"
    assert format_number(2.5) == "2.5"
    assert format_number(-7) == "-7"


def test_extract_answer_takes_last():
    text = "<answer>1</answer> wait <answer> 42 </answer>"
    assert extract_answer(text) == "42"
    assert extract_answer("no answer") is None
    assert extract_answer("<answer>unclosed") is None


def test_normalize_answer():
    assert normalize_answer("  The City of  Kelmar. ") == "city of kelmar"


@pytest.mark.parametrize(
    "text, value",
    [("1,234", 1234.0), ("$18", 18.0), ("18.", 18.0), ("-3.5", -3.5), ("50%", 50.0),
     ("1e3", 1000.0), ("eighteen", None), ("1 2", None), ("", None)],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_math_and_text_matches():
    assert verify_math("18.0", "18").correct
    assert verify_math("$1,200", "1200").correct
    assert not verify_math("19", "18").correct
    assert not verify_math("eighteen", "18").correct
    assert verify_qa("the Vomutia", "vomutia").correct
    assert not verify_qa("18.0", "18").correct  # text answers compare as text


def test_grade_by_task():
    arith = {"task": "arithmetic", "answer": "37582"}
    assert grade("<think>…</think><answer>37,582</answer>", arith).correct
    assert not grade("37582", arith).correct  # no answer tag
    lookup = {"task": "lookup", "answer": "Vomutia"}
    assert grade("<answer>vomutia.</answer>", lookup).correct
    assert grade("<answer>Bavuv</answer>", lookup).score == 0.0
    user_numeric = {"task": "jsonl", "answer": "3"}
    assert grade("<answer>3.0</answer>", user_numeric).correct
    user_text = {"task": "jsonl", "answer": "Paris"}
    assert grade("<answer>paris</answer>", user_text).correct
