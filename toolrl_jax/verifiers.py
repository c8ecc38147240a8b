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
* **Function calls**: a BFCL possible-answer list as gold (``[{name: {arg: [allowed values]}}]``,
  ``[]`` = no call is right) is checked by :func:`check_calls`, BFCL's AST checker (all calls of
  the final turn, parallel calls order-free); a single call object as gold by
  :func:`verify_function_call` (tool name and JSON arguments equal).

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
from collections.abc import Callable, Mapping, Sequence
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


# --------------------------------------------------------------------- BFCL AST check (many calls)
#
# A port of BFCL's Python AST checker (``bfcl_eval/eval_checker/ast_eval/ast_checker.py``, Apache
# 2.0, Gorilla project): same rules, same order of checks, so a verdict here is BFCL's verdict.
# Calls are BFCL's model output: a list of ``{name: {arg: value}}``; ``None`` stands for a call the
# syntax could not decode. Extensions: JSON-schema ``object`` / ``number`` types read as BFCL's
# ``dict`` / ``float``; a gold name without a function spec is checked with no type information.

Call = Mapping[str, Mapping[str, Any]] | None
CallParser = Callable[[str], list]

_BFCL_TYPES: Mapping[str, type] = {
    "string": str, "integer": int, "float": float, "number": float, "boolean": bool,
    "array": list, "tuple": list, "dict": dict, "object": dict, "any": str,
}
_NESTED_TYPES = ("array", "tuple")
_STANDARDIZE_RE = re.compile(r"[ \,\.\/\-\_\*\^]")


def standardize_string(text: str) -> str:
    """BFCL's string normal form: no spaces or ``,./-_*^``, lower case, ``'`` -> ``"``."""
    return _STANDARDIZE_RE.sub("", text).lower().replace("'", '"')


def _answer_type(allowed: Sequence) -> type | None:
    return next((type(a) for a in allowed if a != ""), None)


def _type_ok(value: Any, allowed: Sequence, expected: type, nested: type | None) -> tuple[bool, bool]:
    """BFCL's ``type_checker`` -> (valid, is_variable)."""
    answer_type = _answer_type(allowed)
    is_variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if nested is None:
            return True, is_variable
        for item in allowed:
            if type(item) is list and not all(_type_ok(v, item, nested, None)[0] for v in value):
                continue
            return True, is_variable
        return False, False  # BFCL marks the nested failure invalid whatever follows
    if answer_type is not None and type(value) is answer_type:
        return True, True
    return False, False


def _std(values: Sequence) -> list:
    return [standardize_string(v) if type(v) is str else v for v in values]


def _dict_ok(value: Mapping, allowed: Sequence) -> bool:
    for answer in allowed:
        if answer == "":
            continue
        ok = all(k in answer and (standardize_string(v) if type(v) is str else v) in _std(answer[k])
                 for k, v in value.items())
        if ok and all(k in value or "" in v for k, v in answer.items()):
            return True
    return False


def _list_dict_ok(value: list, allowed: Sequence) -> bool:
    return any(len(value) == len(answer) and all(_dict_ok(v, [a]) for v, a in zip(value, answer))
               for answer in allowed)


def _check_one(spec: Mapping | None, call: Mapping, gold: Mapping) -> str | None:
    """BFCL's ``simple_function_checker``: None when ``call`` matches ``gold``, else why not."""
    (name, allowed_args), = gold.items()
    params = (spec or {}).get("parameters") or {}
    details = params.get("properties") or {}
    if name not in call:
        return f"function {name!r} not called"
    args = call[name]
    for param in params.get("required") or ():
        if param not in args:
            return f"{name}: missing required argument {param!r}"
    for param, value in args.items():
        if (spec is not None and param not in details) or param not in allowed_args:
            return f"{name}: unexpected argument {param!r}"
        allowed = allowed_args[param]
        kind = details.get(param, {}).get("type")
        if kind is None:  # no spec: compare values as BFCL would for the gold's own type
            if value not in allowed and _std([value])[0] not in _std(allowed):
                return f"{name}: argument {param!r}={value!r} not in {allowed!r}"
            continue
        expected = _BFCL_TYPES.get(kind, str)
        nested = None
        if kind in _NESTED_TYPES:
            nested = _BFCL_TYPES.get((details[param].get("items") or {}).get("type", "any"), str)
        if kind == "tuple" and type(value) is tuple:
            value = list(value)
        if expected is float and type(value) is int:
            value = float(value)
        valid, is_variable = _type_ok(value, allowed, expected, nested)
        if not valid:
            return (f"{name}: argument {param!r} has type {type(value).__name__}, expected "
                    f"{kind}: {value!r}")
        if not is_variable:
            if expected is dict:
                if not _dict_ok(value, allowed):
                    return f"{name}: argument {param!r}={value!r} not in {allowed!r}"
                continue
            if expected is list and nested is dict:
                if not _list_dict_ok(value, allowed):
                    return f"{name}: argument {param!r}={value!r} not in {allowed!r}"
                continue
            if expected is str:
                if standardize_string(value) not in [standardize_string(a) for a in allowed
                                                     if type(a) is str]:
                    return f"{name}: argument {param!r}={value!r} not in {allowed!r}"
                continue
            if expected is list:
                if _std(value) not in [_std(a) for a in allowed if isinstance(a, list)]:
                    return f"{name}: argument {param!r}={value!r} not in {allowed!r}"
                continue
        if value not in allowed:
            return f"{name}: argument {param!r}={value!r} not in {allowed!r}"
    for param, allowed in allowed_args.items():
        if param not in args and "" not in allowed:
            return f"{name}: argument {param!r} missing (not optional)"
    return None


def check_calls(calls: Sequence[Call], possible: Sequence[Mapping], functions: Sequence[Mapping] = (),
                ) -> Verdict:
    """BFCL's AST verdict on the calls of a final turn.

    ``possible``: BFCL ground truth, ``[{name: {arg: [allowed values]}}]`` (``""`` among the
    allowed values: the argument may be left out); ``[]``: no call is right (irrelevance: correct
    iff no call decodes). ``functions``: the item's JSON-schema specs (required arguments, types:
    an ``integer`` given for a ``float`` is accepted, strings compare in BFCL's normal form).
    The number of calls must equal the number of gold calls; each gold call (in order) takes the
    first unmatched call that passes (BFCL's order-free parallel check, greedy as BFCL's is).
    """
    decoded = [c for c in calls if c is not None]
    if not possible:
        if decoded:
            return _wrong(f"no call expected, got {len(decoded)}", "ast")
        return Verdict(True, 1.0, "no call, as expected", "ast")
    if len(decoded) < len(calls):
        return _wrong("a call of the final turn could not be decoded", "ast")
    if len(calls) != len(possible):
        return _wrong(f"{len(calls)} calls, expected {len(possible)}", "ast")
    specs = {f.get("name"): f for f in functions if isinstance(f, Mapping)}
    matched: set[int] = set()
    for gold in possible:
        (name, _), = gold.items()
        why = "no call left"
        for i, call in enumerate(calls):
            if i in matched:
                continue
            why = _check_one(specs.get(name), call, gold)
            if why is None:
                matched.add(i)
                break
        else:
            return _wrong(why, "ast")
    return Verdict(True, 1.0, f"{len(possible)} call(s) match", "ast")


def possible_answers(record: Mapping[str, Any]) -> list | None:
    """A record's BFCL ground truth (``answer`` as a list or its JSON text); None for any other
    gold (e.g. a single ``{"name", "arguments"}`` call)."""
    gold = record.get("answer")
    if isinstance(gold, str):
        if not gold.lstrip().startswith("["):
            return None
        try:
            gold = json.loads(gold)
        except json.JSONDecodeError:
            return None
    return gold if isinstance(gold, list) else None


def record_functions(record: Mapping[str, Any]) -> list:
    """The item's own function specs: ``record["tools"]`` or ``record["metadata"]["tools"]``."""
    tools = record.get("tools") or (record.get("metadata") or {}).get("tools") or []
    return list(tools)


def call_from_json(obj: Any) -> Call:
    """``{"name", "arguments" | "parameters"}`` (arguments maybe a JSON string) -> ``{name: args}``;
    None when it is not a well-formed call."""
    loaded = _load_call(obj, "call") if isinstance(obj, Mapping) else "not an object"
    if isinstance(loaded, str):
        return None
    name, args = loaded
    return {name: args}


def extract_calls(text: str) -> list[Call]:
    """Every ``<tool_call>`` of the final turn (after the last ``</tool_response>``), Hermes style;
    a body holding a JSON list is several (parallel) calls. Undecodable bodies give None."""
    turn = text[text.rfind("</tool_response>") + 1:] if "</tool_response>" in text else text
    calls: list[Call] = []
    for body in _TOOL_CALL_RE.findall(turn):
        try:
            obj = json.loads(body.strip(), strict=False)
        except json.JSONDecodeError:
            calls.append(None)
            continue
        calls.extend(call_from_json(o) for o in (obj if isinstance(obj, list) else [obj]))
    if turn.rfind("<tool_call>") > turn.rfind("</tool_call>"):
        calls.append(None)  # a call left open at the token budget
    return calls


# ------------------------------------------------------------------------------------------ dispatch


def verify(predicted: str | Mapping | list | None, record: Mapping[str, Any]) -> Verdict:
    """Verifies an extracted answer against a task record, choosing the verifier by ``record["task"]``.

    Math tasks -> :func:`verify_math`; QA tasks -> :func:`verify_qa`; ``function_call`` ->
    :func:`verify_function_call`; any other task: math when the gold is a plain number, else QA.
    """
    if predicted is None:
        return _wrong("no answer", "none")
    task, gold = record.get("task"), record["answer"]
    if task in FUNCTION_CALL_TASKS:
        possible = possible_answers(record)
        if possible is not None:
            if not isinstance(predicted, list):
                return _wrong("expected the list of calls of the final turn", "ast")
            return check_calls(predicted, possible, record_functions(record))
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


def answer_of(text: str, record: Mapping[str, Any], style: AnswerStyle = "tag",
              parse_calls: CallParser | None = None) -> str | list | None:
    """What :func:`verify` checks for ``record``: the extracted answer text, or, for a
    function-calling item with BFCL gold, the calls of the final turn (``parse_calls``: the call
    syntax's reader, default :func:`extract_calls`; ``[]`` when the turn makes no call)."""
    if record.get("task") in FUNCTION_CALL_TASKS and possible_answers(record) is not None:
        return (parse_calls or extract_calls)(text)
    return extract_answer(text, style)


def answered(answer: str | list | None, text: str, style: AnswerStyle = "tag") -> bool:
    """Whether a completion gave an answer: a call, or (also for "no call") an answer by style."""
    if isinstance(answer, list):
        return bool(answer) or extract_answer(text, style) is not None
    return answer is not None


def grade(text: str, record: Mapping[str, Any], style: AnswerStyle = "tag",
          parse_calls: CallParser | None = None) -> Verdict:
    """THE answer check: the final answer of a full completion (``style``; for function-calling
    items the calls of its final turn) verified against ``record`` (``task``, ``answer``).
    Training rewards use ``score``, eval accuracy ``correct``."""
    return verify(answer_of(text, record, style, parse_calls), record)
