"""The one answer checker, shared by training rewards and evaluation.

:func:`grade` reads the final answer out of a full completion and verifies it against a task
record; training rewards use ``verdict.score`` (1/0 for math and calls, token F1 for QA) and eval
accuracy uses ``verdict.correct``, so the two never disagree about an answer.

* **Extraction**: ``<answer>…</answer>`` tags or ``\\boxed{…}`` (:data:`AnswerStyle`). The *last*
  complete occurrence wins: models often restate or correct an answer, and a tag left open at the
  token budget is no answer at all.
* **Math** (:func:`verify_math`): ``math-verify`` decides, so ``\\boxed{\\frac{1}{2}}``, ``0.5`` and
  ``1/2`` are the same answer and ``2\\sqrt{2}`` equals ``\\sqrt{8}``.
* **QA** (:func:`verify_qa`): SQuAD exact match (``correct``) and token F1 (``score``).
* **Function calls** (:func:`verify_function_call`): tool name and JSON arguments equal.

Decisions (pinned by ``tests/test_verifiers.py``):

* **Percent** follows math-verify: ``N%`` equals both ``N`` and ``N/100`` (``50%`` matches ``50``
  and ``0.5``); without a ``%`` on either side nothing is rescaled (``0.5`` does not match ``50``).
  The numeric fallback applies the same rule so the two paths agree.
* **Equations**: ``x=3`` matches ``3`` in either direction (math-verify unwraps a single
  assignment), the usual convention for "solve for x" answers. A bare ``x=3`` reduces to its value
  (so it also matches ``y=3``); in LaTeX, ``$x=3$`` and ``$y=3$`` differ.
* **Units / currency / separators**: ``\\text{dollars}``, ``$``, ``\\$`` and thousands separators
  (``1,234`` or ``1{,}234``) are ignored; ``1234.00`` equals ``1234``.
* **Plain numbers take a fast path**: training grades every rollout, so when both sides are plain
  numbers (digits, optional sign, ``$``, well-formed thousands separators, decimal point or
  scientific notation; no ``%``) we compare them without math-verify, by math-verify's own rule:
  exact when either side is written as an integer (``10000001`` differs from ``10000000``;
  ``3.0000001`` differs from ``3``), equal after rounding to 6 decimals (half-even) when both are
  decimals (``0.1234567`` equals ``0.1234568``). Such verdicts have method ``"numeric"``.
* **Fallback**: when math-verify cannot parse a side, raises, or times out, we fall back to a plain
  numeric compare (:func:`numbers_equal`, relative tolerance 1e-6; normalised text when neither side
  is a number) and say so in ``reason``.
* **Function-call answers** are read like any other answer (``<answer><tool_call>{…}</tool_call>
  </answer>`` or ``<answer>{…}</answer>``): a bare ``<tool_call>`` in a completion is a call the
  rollout executes, not the final answer.

Thread safety: math-verify's timeouts use ``signal.alarm``, which only works in the main thread. We
pass the timeout there and ``None`` elsewhere; off the main thread there is no time limit, so inputs
longer than :data:`MAX_MATH_CHARS` skip math-verify (a cheap guard against pathological parses).

Imports: only the standard library at import time; ``math_verify`` / ``sympy`` (about 0.3 s to
import) load on the first math answer that needs them, so answer extraction stays cheap to import.
"""

from __future__ import annotations

import json
import math
import re
import string
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

AnswerStyle = Literal["tag", "boxed", "tag_or_boxed"]

MATH_TASKS = frozenset({"arithmetic", "gsm8k", "math", "math500", "aime", "amc", "competition_math"})
QA_TASKS = frozenset({"lookup", "qa", "squad", "hotpotqa", "nq", "triviaqa"})
FUNCTION_CALL_TASKS = frozenset({"function_call"})
MATH_TIMEOUT_S = 5
MAX_MATH_CHARS = 1000

_NUMBER_RE = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_LATEX_CMD_RE = re.compile(r"\\[A-Za-z%$]")
_MATH_DELIM_RE = re.compile(r"\$|\\\(|\\\[|\\boxed")
# Bare scientific notation: math-verify reads "1e3" as "1", so we expand it to a plain decimal first.
_SCI_RE = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+$")
# A plain number for the fast path: "18", "-3.5", "$1,234.50", "18.", ".5" (thousands groups of 3).
_PLAIN_NUMBER_RE = re.compile(r"[-+]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[-+]?\$?\.\d+")
_FLOAT_DIGITS = 15  # math-verify parses decimals to 15 significant digits; longer ones go to it
_SIX_PLACES = Decimal("1e-6")  # math-verify's float_rounding
_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class Verdict:
    """One verification result: ``score`` is 1/0 for math and calls, token F1 for QA."""

    correct: bool
    score: float
    reason: str
    method: str


def _wrong(reason: str, method: str) -> Verdict:
    return Verdict(False, 0.0, reason, method)


# --------------------------------------------------------------------------------------- extraction


def extract_tagged(text: str, tag: str = "answer") -> str | None:
    """Content of the last complete ``<tag>…</tag>``, stripped; None if there is none."""
    close = f"</{tag}>"
    end = text.rfind(close)
    if end < 0:
        return None
    start = text.rfind(f"<{tag}>", 0, end)
    if start < 0:
        return None
    return text[start + len(tag) + 2 : end].strip()


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` with balanced braces; None if none is complete."""
    key = "\\boxed{"
    pos = text.rfind(key)
    while pos >= 0:
        depth, i = 1, pos + len(key)
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[pos + len(key) : i - 1].strip()
        pos = text.rfind(key, 0, pos)  # unbalanced (cut off): try an earlier one
    return None


def extract_answer(text: str, style: AnswerStyle = "tag", tag: str = "answer") -> str | None:
    """The final answer in ``text`` for an answer style; None when there is none."""
    if style == "tag":
        return extract_tagged(text, tag)
    if style == "boxed":
        return extract_boxed(text)
    tagged = extract_tagged(text, tag)
    if tagged is None:
        return extract_boxed(text)
    boxed = extract_boxed(tagged)  # "<answer>\\boxed{4}</answer>" means 4
    return boxed if boxed is not None else tagged


# ------------------------------------------------------------------------------------ normalisation


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the SQuAD normalisation)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def parse_number(text: str) -> float | None:
    """``"$1,234.50"`` -> 1234.5; None when the text is not a single number."""
    cleaned = text.strip().replace(",", "").replace("$", "").replace("%", "").strip()
    cleaned = cleaned.rstrip(".")
    if not _NUMBER_RE.match(cleaned):
        return None
    return float(cleaned)


def numbers_equal(a: float, b: float, rel_tol: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)


# --------------------------------------------------------------------------------------------- math


def _prepare_math(text: str) -> str:
    """Makes bare answers parseable: math-verify only reads LaTeX inside ``$…$`` / ``\\boxed{}``."""
    text = text.replace("\\$", "").strip()  # an escaped dollar is currency; math-verify chokes on it bare
    if _SCI_RE.match(text):
        return _expand_scientific(text)
    if _LATEX_CMD_RE.search(text) and not _MATH_DELIM_RE.search(text):
        return f"${text}$"  # bare "2\sqrt{2}" would otherwise be read as the plain number 2
    return text


def _expand_scientific(text: str) -> str:
    """``"2.5e-3"`` -> ``"0.0025"``; left as it is when the expansion would be huge (``1e999999999``)."""
    value = Decimal(text)
    return format(value, "f") if abs(value.adjusted()) <= MAX_MATH_CHARS else text


def _plain_number(text: str) -> tuple[Decimal, bool] | None:
    """(exact value, written as an integer) for a plain number; None for anything else."""
    text = text.strip()
    if _SCI_RE.match(text):
        text = _expand_scientific(text)  # the expansion math-verify gets (see _prepare_math)
    if not _PLAIN_NUMBER_RE.fullmatch(text):
        return None
    body = text.replace(",", "").replace("$", "")
    point = body.find(".")
    is_integer = point < 0 or point == len(body) - 1  # "18." reads as the integer 18
    if not is_integer and len(body.lstrip("+-").replace(".", "").lstrip("0")) > _FLOAT_DIGITS:
        return None  # past float precision: let math-verify round it its own way
    return Decimal(body.rstrip(".")), is_integer


def _fast_math(predicted: str, gold: str) -> Verdict | None:
    """math-verify's verdict on two plain numbers without running it; None if either is not one.

    math-verify compares two integers exactly; an integer and a decimal exactly (SymPy >= 1.13 keeps
    ``Float`` and ``Integer`` apart unless the values are identical); two decimals after rounding
    both to 6 places, half-even.
    """
    gold_value, pred_value = _plain_number(gold), _plain_number(predicted)
    if gold_value is None or pred_value is None:
        return None
    (g, g_int), (p, p_int) = gold_value, pred_value
    if g_int or p_int:
        ok = g == p
    else:
        ok = g.quantize(_SIX_PLACES, ROUND_HALF_EVEN) == p.quantize(_SIX_PLACES, ROUND_HALF_EVEN)
    return Verdict(ok, float(ok), f"plain numbers {'equal' if ok else 'differ'}", "numeric")


def _timeout() -> int | None:
    """The signal-based timeout where it works (main thread); None (no timeout) in worker threads."""
    return MATH_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _parse(text: str, side: str) -> tuple[list | None, str]:
    """math-verify parse of one side -> (parsed, "") or (None, why it could not be used)."""
    import math_verify
    from math_verify.errors import TimeoutException
    from sympy import Basic, MatrixBase

    if len(text) > MAX_MATH_CHARS:
        return None, f"{side} longer than {MAX_MATH_CHARS} chars"
    try:
        parsed = math_verify.parse(_prepare_math(text), parsing_timeout=_timeout(), raise_on_error=True)
    except TimeoutException:  # a BaseException in math-verify, hence its own clause
        return None, f"math-verify timed out parsing {side}"
    except Exception as e:  # any parser failure means "use the fallback"
        return None, f"math-verify raised {type(e).__name__} parsing {side}"
    # Only a string match (no sympy object) means the LaTeX/expression parse itself failed.
    if not any(isinstance(p, Basic | MatrixBase) for p in parsed):
        return None, f"math-verify could not parse {side}"
    return parsed, ""


def _numeric_values(text: str) -> list[float] | None:
    """Plain-number readings of ``text``; ``N%`` reads as N and N/100 (math-verify's percent rule)."""
    value = parse_number(text.replace("\\%", "%").replace("\\$", "$"))
    if value is None:
        return None
    return [value, value / 100] if "%" in text else [value]


def _numeric_fallback(predicted: str, gold: str, why: str) -> Verdict:
    """Numeric compare (rel. tol. 1e-6) when math-verify could not decide; else normalised text."""
    golds, preds = _numeric_values(gold), _numeric_values(predicted)
    if golds is None and preds is None:
        ok = normalize_answer(predicted) == normalize_answer(gold)
        return Verdict(ok, float(ok), f"fallback: {why}; normalised text {'equal' if ok else 'differs'}",
                       "text-fallback")
    if golds is None or preds is None:
        return _wrong(f"fallback: {why}; {'gold' if golds is None else 'prediction'} is not a number",
                      "numeric-fallback")
    ok = any(numbers_equal(p, g) for p in preds for g in golds)
    reason = f"fallback: {why}; numbers {'equal' if ok else 'differ'}"
    return Verdict(ok, float(ok), reason, "numeric-fallback")


def verify_math(predicted: str, gold: str) -> Verdict:
    """Whether ``predicted`` is mathematically equivalent to ``gold``: plain numbers directly, else
    math-verify, else a numeric fallback."""
    fast = _fast_math(predicted, gold)
    if fast is not None:
        return fast
    import math_verify
    from math_verify.errors import TimeoutException

    gold_parsed, why = _parse(gold, "gold")
    if gold_parsed is None:
        return _numeric_fallback(predicted, gold, why)
    pred_parsed, why = _parse(predicted, "prediction")
    if pred_parsed is None:
        return _numeric_fallback(predicted, gold, why)
    try:
        # Gold first: math-verify's compare is asymmetric (assignments and intervals unwrap on gold).
        ok = math_verify.verify(gold_parsed, pred_parsed, timeout_seconds=_timeout(), raise_on_error=True)
    except TimeoutException:
        return _numeric_fallback(predicted, gold, "math-verify timed out comparing")
    except Exception as e:  # likewise for the comparison
        return _numeric_fallback(predicted, gold, f"math-verify raised {type(e).__name__} comparing")
    return Verdict(ok, float(ok), f"math-verify: {'equivalent' if ok else 'not equivalent'}", "math-verify")


# ----------------------------------------------------------------------------------------------- QA


def token_f1(predicted: str, gold: str) -> float:
    """SQuAD token F1 of normalised answers; two empty answers score 1, one empty scores 0."""
    pred_tokens, gold_tokens = normalize_answer(predicted).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def verify_qa(predicted: str, gold: str | list[str]) -> Verdict:
    """SQuAD exact match (``correct``) and max token F1 over the gold answers (``score``)."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    if not golds:
        return _wrong("no gold answers", "qa")
    norm = normalize_answer(predicted)
    exact = [g for g in golds if normalize_answer(g) == norm]
    f1 = max(token_f1(predicted, g) for g in golds)
    if exact:
        return Verdict(True, 1.0, f"exact match with {exact[0]!r}", "qa")
    return Verdict(False, f1, f"no exact match; best token F1 {f1:.3f}", "qa")


# ------------------------------------------------------------------------------------ function call


def _load_call(call: str | Mapping, side: str) -> tuple[str, dict] | str:
    """(name, arguments) from a dict or JSON text (optionally in ``<tool_call>`` tags), or an error."""
    if isinstance(call, str):
        tagged = _TOOL_CALL_RE.findall(call)
        text = tagged[-1] if tagged else call
        try:
            call = json.loads(text.strip())
        except json.JSONDecodeError as e:
            return f"{side} is not valid JSON: {e.msg}"
    if not isinstance(call, Mapping):
        return f"{side} must be a JSON object, got {type(call).__name__}"
    if isinstance(call.get("function"), Mapping):  # OpenAI nesting: {"type": "function", "function": {…}}
        call = call["function"]
    name = call.get("name")
    if not isinstance(name, str):
        return f'{side} needs a string "name"'
    args = call.get("arguments", call.get("parameters", {}))
    if isinstance(args, str):  # OpenAI sends arguments as a JSON string
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            return f"{side} arguments are not valid JSON: {e.msg}"
    if not isinstance(args, Mapping):
        return f"{side} arguments must be a JSON object, got {type(args).__name__}"
    return name.strip(), dict(args)


def _diff(pred: Any, gold: Any, path: str = "") -> str | None:
    """First difference between two JSON values, naming its key path (``loc.city``, ``ids[2]``)."""
    if isinstance(gold, Mapping) and isinstance(pred, Mapping):
        missing = [k for k in gold if k not in pred]
        extra = [k for k in pred if k not in gold]
        if missing:
            return f"missing argument {path + '.' * bool(path) + str(missing[0])!r}"
        if extra:
            return f"extra argument {path + '.' * bool(path) + str(extra[0])!r}"
        for key in gold:
            found = _diff(pred[key], gold[key], path + "." * bool(path) + str(key))
            if found:
                return found
        return None
    if isinstance(gold, list) and isinstance(pred, list):
        if len(gold) != len(pred):
            return f"argument {path!r}: {len(pred)} items, expected {len(gold)}"
        for i, (p, g) in enumerate(zip(pred, gold, strict=True)):
            found = _diff(p, g, f"{path}[{i}]")
            if found:
                return found
        return None
    # bool is an int subclass in Python, but JSON true must not equal 1.
    if isinstance(gold, bool) or isinstance(pred, bool):
        same = type(gold) is type(pred) and gold == pred
    elif isinstance(gold, int | float) and isinstance(pred, int | float):
        same = gold == pred  # exact: 1 == 1.0, but no tolerance (ids, counts and amounts must match)
    elif isinstance(gold, str) and isinstance(pred, str):
        same = gold.strip() == pred.strip()
    else:
        same = type(gold) is type(pred) and gold == pred
    return None if same else f"argument {path!r}: got {pred!r}, expected {gold!r}"


def verify_function_call(predicted: str | Mapping, gold: Mapping | str) -> Verdict:
    """Tool name and JSON arguments equal (key order free, ``1 == 1.0``, strings compared stripped)."""
    gold_call = _load_call(gold, "gold")
    if isinstance(gold_call, str):
        return _wrong(gold_call, "function-call")
    pred_call = _load_call(predicted, "prediction")
    if isinstance(pred_call, str):
        return _wrong(pred_call, "function-call")
    (pred_name, pred_args), (gold_name, gold_args) = pred_call, gold_call
    if pred_name != gold_name:
        return _wrong(f"tool name {pred_name!r}, expected {gold_name!r}", "function-call")
    found = _diff(pred_args, gold_args, "")
    if found:
        return _wrong(found, "function-call")
    return Verdict(True, 1.0, f"call to {gold_name!r} matches", "function-call")


# ------------------------------------------------------------------------------------------ dispatch


def verify(predicted: str | Mapping | None, record: Mapping[str, Any]) -> Verdict:
    """Verifies an extracted answer against a task record, choosing the verifier by ``record["task"]``.

    Math tasks -> :func:`verify_math`; QA tasks -> :func:`verify_qa`; ``function_call`` ->
    :func:`verify_function_call`; any other task: math when the gold is a plain number, else QA.
    """
    if predicted is None:
        return _wrong("no answer", "none")
    task, gold = record.get("task"), record["answer"]
    if task in FUNCTION_CALL_TASKS:
        return verify_function_call(predicted, gold)
    if not isinstance(predicted, str):
        return _wrong(f"expected a text answer for task {task!r}, got {type(predicted).__name__}", "none")
    if isinstance(gold, list) and gold and task in MATH_TASKS:  # several accepted forms: any one will do
        verdicts = [verify_math(predicted, str(g)) for g in gold]
        return next((v for v in verdicts if v.correct), verdicts[0])
    if task in QA_TASKS or isinstance(gold, list):
        return verify_qa(predicted, gold)
    if task in MATH_TASKS or parse_number(str(gold)) is not None:
        return verify_math(predicted, str(gold))
    return verify_qa(predicted, str(gold))


def grade(text: str, record: Mapping[str, Any], style: AnswerStyle = "tag") -> Verdict:
    """THE answer check: the final answer of a full completion (``style``) verified against
    ``record`` (``task``, ``answer``). Training rewards use ``score``, eval accuracy ``correct``."""
    return verify(extract_answer(text, style), record)
