"""The one verifier: extraction, math-verify forms on real GSM8K golds, the plain-number fast path,
SQuAD EM/F1, function calls, fallbacks, and ``grade`` on the shared agreement set."""

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import math_verify
import pytest
from math_verify.errors import TimeoutException

from toolrl_jax import verifiers as v
from toolrl_jax.verifiers import (
    Verdict,
    extract_answer,
    extract_boxed,
    extract_tagged,
    grade,
    numbers_equal,
    token_f1,
    verify,
    verify_function_call,
    verify_math,
    verify_qa,
)

TESTS = Path(__file__).parent


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


GSM8K_ROWS = _jsonl(TESTS / "eval" / "data" / "gsm8k_gold.jsonl")
AGREEMENT_ROWS = _jsonl(TESTS / "data" / "verifier_agreement.jsonl")  # shared with the scoring tests
FAST_MATH = v._fast_math  # the real one: some tests switch it off
EQUIVALENT_VERDICT = Verdict(True, 1.0, "math-verify: equivalent", "math-verify")
NOT_EQUIVALENT_VERDICT = Verdict(False, 0.0, "math-verify: not equivalent", "math-verify")


@pytest.fixture
def no_fast_path(monkeypatch):
    """Sends plain numbers through math-verify too (to pin its decisions and the fallbacks)."""
    monkeypatch.setattr(v, "_fast_math", lambda predicted, gold: None)


def _final(solution: str) -> int:
    """The integer after ``####`` (all of the first 40 test golds are integers)."""
    return int(solution.split("####")[-1].strip().replace(",", ""))


# ----------------------------------------------------------------------------------------- extraction


def test_extract_answer_styles():
    text = "<answer>first</answer> wait, <answer> 42 </answer> and \\boxed{\\frac{1}{2}}"
    assert extract_answer(text) == "42"  # the last complete tag, stripped
    assert extract_answer(text, "boxed") == "\\frac{1}{2}"
    assert extract_answer("so \\boxed{7}", "tag_or_boxed") == "7"
    assert extract_answer("<answer>\\boxed{8}</answer>", "tag_or_boxed") == "8"
    assert extract_answer("<answer>x</answer> then \\boxed{9}", "tag_or_boxed") == "x"  # a tag wins
    assert extract_answer("<answer>cut off at the bud") is None
    assert extract_answer("<final> 3 </final>", tag="final") == "3"
    assert extract_tagged("no answer") is None
    assert extract_boxed("\\boxed{1} then \\boxed{unbalanced") == "1"
    assert extract_boxed("\\boxed{\\frac{1}{\\sqrt{2}}}") == "\\frac{1}{\\sqrt{2}}"


# ---------------------------------------------------------------------------------------- GSM8K golds


def test_gsm8k_gold_file_is_the_real_test_split_head():
    assert len(GSM8K_ROWS) == 40 and [r["index"] for r in GSM8K_ROWS] == list(range(40))
    assert GSM8K_ROWS[0]["answer"].endswith("#### 18")  # Janet's ducks
    assert [_final(r["answer"]) for r in GSM8K_ROWS[:5]] == [18, 3, 70000, 540, 20]
    assert (TESTS / "eval" / "data" / "LICENSE").read_text().startswith("MIT License")


@pytest.mark.parametrize("row", GSM8K_ROWS, ids=lambda r: f"gsm8k{r['index']}")
def test_gsm8k_final_answer_forms(row):
    n = _final(row["answer"])
    gold = row["answer"].split("####")[-1].strip()
    plain = [str(n), f"${n}", f"{n}.00"] + ([f"{n:,}"] if abs(n) >= 1000 else [])
    latex = [rf"\boxed{{{n}}}", f"The answer is {n}."]
    if abs(n) >= 1000:
        latex.append(rf"\boxed{{{n:,}}}".replace(",", "{,}"))
    for form in plain:
        assert verify_math(form, gold) == Verdict(True, 1.0, "plain numbers equal", "numeric"), form
    for form in latex:
        assert verify_math(form, gold) == EQUIVALENT_VERDICT, form
    for wrong in (str(n + 1), rf"\boxed{{{n + 1}}}", f"{n + 1:,}"):
        verdict = verify_math(wrong, gold)
        assert not verdict.correct and verdict.score == 0.0, wrong


def test_some_gsm8k_golds_need_thousands_separators():
    assert sum(_final(r["answer"]) >= 1000 for r in GSM8K_ROWS) >= 2  # 70000 and 57500


# ------------------------------------------------------------------------------------ math answer forms

EQUIVALENT = [  # (predicted, gold)
    (r"\frac{1}{2}", "0.5"),
    (r"\boxed{\frac{1}{2}}", "0.5"),
    ("1/2", "0.5"),
    ("0.5", r"\frac{1}{2}"),
    (r"2\sqrt{2}", r"\sqrt{8}"),  # bare LaTeX: needs the $…$ wrapping, else math-verify reads "2"
    (r"\dfrac{3}{4}", "0.75"),
    ("1,000", "1000"),
    ("$1,234", "1234"),
    (r"$1{,}234$", "1234"),
    ("1234.00", "1234"),
    (r"18 \text{ dollars}", "18"),
    (r"\boxed{18\text{ dollars}}", "18"),
    (r"\$18", "18"),
    ("1e3", "1000"),  # math-verify alone reads "1e3" as 1
    ("0.333333", "1/3"),  # math-verify rounds floats to 6 places
    ("5.5", "11/2"),
    ("-0.25", r"-\frac{1}{4}"),
    ("2 + 2", "4"),
    ("The answer is 18.", "18"),
    ("x=3", "3"),  # decision: a single assignment unwraps, either direction
    ("3", "x = 3"),
    ("50%", "0.5"),  # decision: N% equals N/100 ...
    ("50%", "50"),  # ... and N
    (r"50\%", "0.5"),
    ("0.5", "50%"),
]
NOT_EQUIVALENT = [
    ("3.14", r"\pi"),
    ("12", "12.5"),
    ("-3", "3"),
    ("0.33", "1/3"),
    ("1,234", "1235"),
    (r"\sqrt{2}", "1.41"),
    (r"\frac{1}{3}", "0.5"),
    ("0.5", "50"),  # no % sign on either side: no rescaling
    ("x=4", "3"),
    ("$x=3$", "$y=3$"),  # LaTeX equations keep their variables (bare ones reduce to the value: below)
]


@pytest.mark.parametrize(("predicted", "gold"), EQUIVALENT)
def test_equivalent_math_forms(predicted, gold, monkeypatch):
    verdict = verify_math(predicted, gold)
    assert (verdict.correct, verdict.score) == (True, 1.0)
    monkeypatch.setattr(v, "_fast_math", lambda p, g: None)
    assert verify_math(predicted, gold) == EQUIVALENT_VERDICT  # math-verify's own decision


@pytest.mark.parametrize(("predicted", "gold"), NOT_EQUIVALENT)
def test_non_equivalent_math_forms(predicted, gold, monkeypatch):
    verdict = verify_math(predicted, gold)
    assert (verdict.correct, verdict.score) == (False, 0.0)
    monkeypatch.setattr(v, "_fast_math", lambda p, g: None)
    assert verify_math(predicted, gold) == NOT_EQUIVALENT_VERDICT


def test_bare_equations_reduce_to_their_value():
    """Decision (math-verify's plain-expression reading): a bare ``x=3`` is its right-hand side, 3."""
    assert verify_math("x=3", "y=3").correct and verify_math("x = 3", "3").correct
    assert not verify_math("x=3", "4").correct


def test_gold_goes_first_to_math_verify():
    """math-verify is asymmetric: a set prediction may answer a relational gold, not the reverse."""
    assert verify_math("$(1,2)$", "$1<x<2$").correct
    assert not verify_math("$1<x<2$", "$(1,2)$").correct


# ------------------------------------------------------------------------------- plain-number fast path

# Hand-picked plain pairs around every rule: integers exact, decimals at 6 places (half-even),
# integer vs decimal exact, separators, currency, signs, scientific notation.
PLAIN_EDGE_PAIRS = [
    ("10000001", "10000000"), ("123456789", "123456788"), ("99999999999", "100000000000"),
    ("123456789012345678901", "123456789012345678901"), ("007", "7"), ("-0", "0"), ("0.", "0"),
    ("18.", "18.0"), ("3.0", "3"), ("5", "5.000000"), ("3.0000001", "3"), ("3.0000001", "3.0"),
    ("7", "7.0000000001"), ("1000000.5", "1000000"), ("1234567.8", "1234567.9"),
    ("0.1234567", "0.1234568"), ("0.0000001", "0.0000002"), ("0.0000001", "0"), ("0.0000001", "0.0"),
    ("0.0000005", "0.000001"), ("0.0000015", "0.000002"), ("0.0000025", "0.000002"),
    ("-0.0000005", "0.0"), ("99.9999995", "100"), ("99.9999995", "100.0"), ("99.9999995", "99.999999"),
    ("2.5", "2.50000004"), ("3.14159265", "3.14159266"), ("0.333333", "0.3333333"), ("12", "12.5"),
    ("-0.5", "0.5"), (".5", "0.5"), ("$.5", "0.5"), ("$18", "18"), ("$1,234.50", "1234.5"),
    ("1,234.5678", "1234.5678"), ("12,345,678", "12345678"), ("1,234", "1235"), ("1e3", "1000"),
    ("1E3", "1000"), ("1.0e3", "1000.0"), ("2.5e-3", "0.0025"), ("1e-7", "0"), ("1e-7", "0.0"),
    ("1e-10", "2e-10"), ("1.50e1", "15"), ("100", "1e2"), ("0.0001", "0.0002"),
]


def _random_plain_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Gold numbers as models and datasets write them, each against a near or equal prediction."""
    rng = random.Random(seed)

    def number() -> str:
        kind = rng.randrange(5)
        if kind == 0:
            return str(rng.randint(-10 ** rng.randint(1, 9), 10 ** rng.randint(1, 9)))
        if kind == 1:
            return f"{rng.uniform(-1000, 1000):.{rng.randint(1, 8)}f}"
        if kind == 2:
            return f"{rng.randint(0, 10**8):,}"
        if kind == 3:
            return f"{rng.uniform(0, 1):.{rng.randint(5, 9)}f}"
        return str(rng.randint(0, 100)) + rng.choice(
            [".", ".0", ".00", ".5", ".0000001", ".000001", ".0000005", ".0000004", ".9999999"])

    pairs = []
    for _ in range(n):
        gold = number()
        value = v._plain_number(gold)[0]
        step = rng.choice(["1", "0.1", "0.000001", "0.0000001", "0.0000005", "1e-9"])
        prediction = rng.choice([
            gold, str(value), str(value + rng.choice([1, -1]) * Decimal(step)),
            f"{value:.{rng.randint(0, 8)}f}", f"{value:,}", number(),
            str(value) + ("0" if "." in str(value) else ".0"), ("$" + str(value)) if value >= 0 else gold,
        ])
        pairs.append((prediction, gold))
    return pairs


def test_fast_path_agrees_with_math_verify_on_plain_numbers(no_fast_path):
    assert all(FAST_MATH(p, g) is not None for p, g in PLAIN_EDGE_PAIRS)
    generated = _random_plain_pairs(300)
    pairs = PLAIN_EDGE_PAIRS + [(p, g) for p, g in generated if FAST_MATH(p, g) is not None]
    assert len(pairs) > len(PLAIN_EDGE_PAIRS) + 0.95 * len(generated)  # > 15 digits: math-verify's
    disagreements, outcomes = [], []
    for predicted, gold in pairs:
        fast = FAST_MATH(predicted, gold)
        assert fast.method == "numeric"
        slow = verify_math(predicted, gold)  # the fixture sends it through math-verify
        assert slow.method == "math-verify", (predicted, gold, slow)
        outcomes.append(slow.correct)
        if fast.correct != slow.correct:
            disagreements.append((predicted, gold, fast.correct, slow.correct))
    assert disagreements == []
    assert 0.25 < sum(outcomes) / len(outcomes) < 0.9  # both answers well represented


def test_fast_path_never_runs_math_verify(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("math-verify called")

    monkeypatch.setattr(math_verify, "parse", boom)
    monkeypatch.setattr(math_verify, "verify", boom)
    assert verify_math("37,582", "37582") == Verdict(True, 1.0, "plain numbers equal", "numeric")
    assert verify_math("$18.00", "18") == Verdict(True, 1.0, "plain numbers equal", "numeric")
    assert verify_math("10000001", "10000000") == Verdict(False, 0.0, "plain numbers differ", "numeric")
    assert grade("<think>16-3-4=9, 9*2</think><answer>18</answer>", {"task": "gsm8k", "answer": "18"}).correct


def test_fast_path_is_math_verifys_rule_not_a_relative_tolerance():
    """Decision: 1e-6 relative tolerance would accept 10000001 for 10000000; math-verify does not."""
    assert numbers_equal(10000001, 10000000) and not verify_math("10000001", "10000000").correct
    assert numbers_equal(1000000.5, 1000000) and not verify_math("1000000.5", "1000000").correct
    assert not numbers_equal(1e-7, 2e-7) and verify_math("0.0000001", "0.0000002").correct


@pytest.mark.parametrize("text", ["50%", "1,2", "1234,567", "$-5", "1/2", r"\$18", "18 dollars", "x=3",
                                  "1 000", "0.12345678901234567", "1e999999", "", "-"])
def test_not_plain_numbers_go_to_math_verify(text):
    assert v._plain_number(text) is None
    assert v._fast_math(text, "18") is None and v._fast_math("18", text) is None


def test_huge_exponent_is_not_expanded():
    assert v._prepare_math("1e999999999") == "1e999999999"  # 1e9 digits would exhaust memory
    assert v._prepare_math("2.5e-3") == "0.0025"


# ------------------------------------------------------------------------------------------ fallbacks


def test_unparseable_prediction_falls_back_and_says_so():
    assert verify_math("abc", "18") == Verdict(
        False, 0.0, "fallback: math-verify could not parse prediction; prediction is not a number",
        "numeric-fallback")
    assert verify_math("", "18").reason.startswith("fallback: math-verify could not parse prediction")


def test_parse_raising_falls_back_to_numeric(monkeypatch, no_fast_path):
    def boom(*args, **kwargs):
        raise RuntimeError("parser exploded")

    monkeypatch.setattr(math_verify, "parse", boom)
    why = "fallback: math-verify raised RuntimeError parsing gold"
    assert verify_math("18", "18") == Verdict(True, 1.0, f"{why}; numbers equal", "numeric-fallback")
    assert verify_math("$1,234", "1234").correct
    assert verify_math("19", "18") == Verdict(False, 0.0, f"{why}; numbers differ", "numeric-fallback")
    assert verify_math("50%", "0.5").correct and not verify_math("0.5", "50").correct  # same percent rule
    assert verify_math("eighteen", "18").reason.endswith("prediction is not a number")


def test_parse_timeout_and_empty_parse_fall_back(monkeypatch, no_fast_path):
    def slow(*args, **kwargs):
        raise TimeoutException("Operation timed out!")

    monkeypatch.setattr(math_verify, "parse", slow)
    assert verify_math("7", "7").reason == "fallback: math-verify timed out parsing gold; numbers equal"
    monkeypatch.setattr(math_verify, "parse", lambda *a, **k: [])
    assert verify_math("7", "7").reason == "fallback: math-verify could not parse gold; numbers equal"
    # neither side is a number: normalised text compare
    assert verify_math("Yes.", "yes") == Verdict(
        True, 1.0, "fallback: math-verify could not parse gold; normalised text equal", "text-fallback")


def test_compare_raising_falls_back(monkeypatch):
    def boom(*args, **kwargs):
        raise ValueError("sympy blew up")

    monkeypatch.setattr(math_verify, "verify", boom)
    verdict = verify_math(r"\boxed{12}", "12")
    assert verdict.correct is False  # "\boxed{12}" is not a plain number for the fallback
    assert verdict.reason == ("fallback: math-verify raised ValueError comparing; "
                              "prediction is not a number")
    assert verify_math("12", "12").method == "numeric"  # plain numbers never reach math-verify
    assert verify_math(r"\$12", "12") == Verdict(
        True, 1.0, "fallback: math-verify raised ValueError comparing; numbers equal", "numeric-fallback")


def test_overlong_input_skips_math_verify():
    verdict = verify_math("1+" * (v.MAX_MATH_CHARS // 2) + "1", "18")
    assert verdict.method == "numeric-fallback" and "longer than" in verdict.reason and not verdict.correct
    assert verify_math("1" * (v.MAX_MATH_CHARS + 1), "18").method == "numeric"  # a plain number is cheap


# ------------------------------------------------------------------------------------------- threads


def test_math_verify_raises_in_threads_without_our_guard():
    """The hazard the module works around: signal-based timeouts only work in the main thread."""
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="thread"):
        pool.submit(math_verify.parse, "$1$", parsing_timeout=5).result()


def test_verify_math_from_worker_threads():
    pairs = [(r"\boxed{\frac{1}{2}}", "0.5", True), (r"2\sqrt{2}", r"\sqrt{8}", True),
             (r"\frac{1}{3}", "0.5", False)]
    with ThreadPoolExecutor(2) as pool:
        verdicts = list(pool.map(lambda p: verify_math(p[0], p[1]), pairs))
    assert [v.correct for v in verdicts] == [True, True, False]
    assert all(v.method == "math-verify" for v in verdicts)


def test_timeout_only_in_main_thread(monkeypatch):
    seen = []
    real = math_verify.parse

    def spy(text, **kwargs):
        seen.append((threading.current_thread() is threading.main_thread(), kwargs["parsing_timeout"]))
        return real(text, **kwargs)

    monkeypatch.setattr(math_verify, "parse", spy)
    verify_math("1/2", "0.5")
    with ThreadPoolExecutor(1) as pool:
        pool.submit(verify_math, "1/2", "0.5").result()
    assert seen == [(True, v.MATH_TIMEOUT_S)] * 2 + [(False, None)] * 2


# ------------------------------------------------------------------------------------------------ QA


def test_token_f1_golden_values():
    # "the cat sat" -> [cat, sat]; "cat sat on mat" -> [cat, sat, on, mat]: P = 1, R = 1/2, F1 = 2/3
    assert token_f1("the cat sat", "cat sat on mat") == pytest.approx(2 / 3)
    # multiset overlap: [cat, cat] vs [cat] shares one token: P = 1/2, R = 1, F1 = 2/3
    assert token_f1("cat cat", "cat") == pytest.approx(2 / 3)
    # [big, red, dog] vs [red, dog, barked]: P = R = 2/3
    assert token_f1("A big red dog", "red dog barked") == pytest.approx(2 / 3)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("the", "a") == 1.0  # both normalise to nothing
    assert token_f1("", "cat") == 0.0


def test_verify_qa_exact_match_and_f1():
    assert verify_qa("The Cat!", "cat") == Verdict(True, 1.0, "exact match with 'cat'", "qa")
    verdict = verify_qa("the cat sat", "cat sat on mat")
    assert not verdict.correct and verdict.score == pytest.approx(2 / 3)
    assert verdict.reason == "no exact match; best token F1 0.667"
    multi = verify_qa("Paris France", ["London", "Paris"])  # max over golds: 2/3 against "Paris"
    assert not multi.correct and multi.score == pytest.approx(2 / 3)
    assert verify_qa("london", ["Paris", "London."]).correct
    assert not verify_qa("x", []).correct


# ------------------------------------------------------------------------------------- function calls

GOLD_CALL = {"name": "get_weather", "arguments": {"city": "Paris", "days": 3, "metric": True}}


def test_function_call_equal_forms():
    ok = Verdict(True, 1.0, "call to 'get_weather' matches", "function-call")
    assert verify_function_call({"name": "get_weather", "arguments": {"metric": True, "days": 3.0,
                                                                      "city": " Paris "}}, GOLD_CALL) == ok
    text = json.dumps({"name": "get_weather", "arguments": '{"days": 3, "city": "Paris", "metric": true}'})
    assert verify_function_call(text, GOLD_CALL) == ok  # arguments as a JSON string (OpenAI style)
    assert verify_function_call(f"<tool_call>\n{json.dumps(GOLD_CALL)}\n</tool_call>", GOLD_CALL) == ok
    nested = {"type": "function", "function": {"name": "get_weather", "parameters": GOLD_CALL["arguments"]}}
    assert verify_function_call(nested, json.dumps(GOLD_CALL)) == ok


@pytest.mark.parametrize(("arguments", "reason"), [
    ({"city": "Paris", "days": 3}, "missing argument 'metric'"),
    ({**GOLD_CALL["arguments"], "units": "C"}, "extra argument 'units'"),
    ({**GOLD_CALL["arguments"], "city": "paris"}, "argument 'city': got 'paris', expected 'Paris'"),
    ({**GOLD_CALL["arguments"], "days": 4}, "argument 'days': got 4, expected 3"),
    ({**GOLD_CALL["arguments"], "metric": 1}, "argument 'metric': got 1, expected True"),  # true != 1
    ({**GOLD_CALL["arguments"], "days": "3"}, "argument 'days': got '3', expected 3"),
])
def test_function_call_argument_mismatch_names_the_key(arguments, reason):
    assert verify_function_call({"name": "get_weather", "arguments": arguments}, GOLD_CALL) == Verdict(
        False, 0.0, reason, "function-call")


def test_function_call_other_failures():
    assert verify_function_call({"name": "get_time", "arguments": {}}, GOLD_CALL).reason == (
        "tool name 'get_time', expected 'get_weather'")
    assert "prediction is not valid JSON" in verify_function_call('{"name": "get_weather"', GOLD_CALL).reason
    assert verify_function_call('{"arguments": {}}', GOLD_CALL).reason == 'prediction needs a string "name"'
    gold = {"name": "f", "arguments": {"a": {"ids": [1, 2]}, "n": 1000000}}
    assert verify_function_call({"name": "f", "arguments": {"a": {"ids": [1, 3]}, "n": 1000000}},
                                gold).reason == "argument 'a.ids[1]': got 3, expected 2"
    assert verify_function_call({"name": "f", "arguments": {"a": {"ids": [1, 2]}, "n": 1000001}},
                                gold).reason == "argument 'n': got 1000001, expected 1000000"  # no tolerance


# ------------------------------------------------------------------------------------------ dispatch


def test_dispatch_by_task():
    assert verify(None, {"task": "gsm8k", "answer": "18"}) == Verdict(False, 0.0, "no answer", "none")
    assert verify(r"\boxed{18}", {"task": "gsm8k", "answer": "18"}).method == "math-verify"
    assert verify("18.0", {"task": "gsm8k", "answer": "18"}).method == "numeric"
    assert verify("1/2", {"task": "arithmetic", "answer": "0.5"}).correct
    assert verify("paris.", {"task": "lookup", "answer": "Paris"}).method == "qa"
    assert verify("Paris", {"task": "lookup", "answer": "1999"}).method == "qa"  # task wins over gold shape
    assert verify(json.dumps(GOLD_CALL), {"task": "function_call", "answer": GOLD_CALL}).correct
    # unknown task: numeric gold -> math, otherwise QA
    assert verify("1,000", {"task": "jsonl", "answer": "1000"}).method == "numeric"
    assert verify(r"1{,}000", {"task": "jsonl", "answer": "1000"}).method == "math-verify"
    assert verify("The Eiffel tower", {"task": "jsonl", "answer": "eiffel tower"}) == Verdict(
        True, 1.0, "exact match with 'eiffel tower'", "qa")
    assert verify("0.5", {"task": "math", "answer": ["1/3", r"\frac{1}{2}"]}).correct


# --------------------------------------------------------------------------------------------- grade


def test_grade_without_an_answer():
    record = {"task": "gsm8k", "answer": "18"}
    assert grade("The answer is 18.", record) == Verdict(False, 0.0, "no answer", "none")
    assert grade("\\boxed{18}", record) == Verdict(False, 0.0, "no answer", "none")  # style "tag"
    assert grade("\\boxed{18}", record, "boxed") == Verdict(True, 1.0, "plain numbers equal", "numeric")


def test_agreement_set_covers_every_kind_of_answer():
    assert 40 <= len(AGREEMENT_ROWS) <= 60 and len({r["id"] for r in AGREEMENT_ROWS}) == len(AGREEMENT_ROWS)
    tasks = {r["task"] for r in AGREEMENT_ROWS}
    assert {"arithmetic", "gsm8k", "math", "lookup", "qa", "function_call", "jsonl"} <= tasks
    assert {r["style"] for r in AGREEMENT_ROWS} == {"tag", "boxed", "tag_or_boxed"}
    assert any(0 < r["expected_score"] < 1 for r in AGREEMENT_ROWS)  # QA partial credit
    assert 0.35 < sum(r["expected_correct"] for r in AGREEMENT_ROWS) / len(AGREEMENT_ROWS) < 0.65


@pytest.mark.parametrize("row", AGREEMENT_ROWS, ids=lambda r: r["id"])
def test_grade_on_the_agreement_set(row):
    verdict = grade(row["completion"], row, row["style"])
    assert verdict.correct is row["expected_correct"], verdict
    assert verdict.score == pytest.approx(row["expected_score"], abs=1e-9), verdict
