"""A calculator that evaluates arithmetic by walking Python's AST (never ``eval``).

Allowed: numbers, ``+ - * / // % **`` (``^`` is read as a power, as on calculators), unary ``+ -``,
parentheses, the constants ``pi`` ``e`` ``tau`` and the functions in :data:`FUNCTIONS`. Anything
else (names, attributes, subscripts, strings, lambdas, ``__import__('os')``) is refused with a
message that names the construct. Sizes are bounded *before* computing: an exponent above
``max_exponent`` or an integer result above ``max_result_digits`` digits is refused, so
``2**10**10`` costs nothing.
"""

from __future__ import annotations

import ast
import math
import operator
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from toolrl_jax.tools.base import ToolResult, string_argument
from toolrl_jax.types import ToolStatus

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
CONSTANTS: Mapping[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}
FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "ln": math.log, "log2": math.log2,
    "log10": math.log10, "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin,
    "acos": math.acos, "atan": math.atan, "abs": abs, "round": round, "floor": math.floor,
    "ceil": math.ceil, "factorial": math.factorial, "gcd": math.gcd, "lcm": math.lcm,
    "min": min, "max": max, "comb": math.comb, "perm": math.perm,
}
_MAX_FACTORIAL = 1000  # 1000! has 2568 digits; comb/perm are bounded by the same n


class CalculatorError(ValueError):
    """An expression the calculator refuses or cannot evaluate; the message is for the model."""


class SafeEvaluator:
    def __init__(self, max_exponent: int = 10000, max_result_digits: int = 4000):
        self.max_exponent = max_exponent
        self.max_result_digits = max_result_digits

    def evaluate(self, expression: str) -> int | float:
        source = expression.replace("^", "**").replace("×", "*").replace("÷", "/").strip()
        try:
            # Model-written text like "12a" makes the parser *warn* before it fails; those
            # warnings would flood the trainer's log, and the error below already says it all.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SyntaxWarning)
                tree = ast.parse(source, mode="eval")
        except SyntaxError as e:
            raise CalculatorError(f"not a valid expression: {e.msg}") from None
        return self._eval(tree.body)

    def _eval(self, node: ast.AST) -> int | float:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise CalculatorError(f"unsupported constant {node.value!r}: only numbers")
            return node.value
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise CalculatorError(f"unknown name '{node.id}'; constants: {', '.join(CONSTANTS)}")
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return self._checked(_UNARY[type(node.op)](self._eval(node.operand)))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = self._eval(node.left), self._eval(node.right)
            if isinstance(node.op, ast.Pow):
                self._check_power(left, right)
            try:
                return self._checked(_BINOPS[type(node.op)](left, right))
            except ZeroDivisionError:
                raise CalculatorError("division by zero") from None
        if isinstance(node, ast.Call):
            return self._call(node)
        raise CalculatorError(f"unsupported syntax: {type(node).__name__} ({ast.unparse(node)!r})")

    def _call(self, node: ast.Call) -> int | float:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            what = ast.unparse(node.func)
            raise CalculatorError(f"unsupported function '{what}'; allowed: {', '.join(FUNCTIONS)}")
        if node.keywords:
            raise CalculatorError("keyword arguments are not supported")
        name = node.func.id
        args = [self._eval(a) for a in node.args]
        if name in ("factorial", "comb", "perm") and any(
            isinstance(a, int) and a > _MAX_FACTORIAL for a in args
        ):
            raise CalculatorError(f"{name} argument too large (limit {_MAX_FACTORIAL})")
        try:
            return self._checked(FUNCTIONS[name](*args))
        except (TypeError, ValueError) as e:
            raise CalculatorError(f"{name}{tuple(args)}: {e}") from None

    def _check_power(self, base: int | float, exponent: int | float) -> None:
        if abs(exponent) > self.max_exponent:
            raise CalculatorError(
                f"exponent {exponent} too large (limit {self.max_exponent})"
            )
        if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
            digits = exponent * math.log10(abs(base))
            if digits > self.max_result_digits:
                raise CalculatorError(
                    f"result of {base}**{exponent} would have ~{digits:.0f} digits "
                    f"(limit {self.max_result_digits})"
                )

    def _checked(self, value: Any) -> int | float:
        if isinstance(value, complex):
            raise CalculatorError("result is a complex number (e.g. a negative number to a "
                                  "fractional power)")
        if isinstance(value, int) and value.bit_length() > self.max_result_digits * 3.33:
            raise CalculatorError(f"integer result too large (limit {self.max_result_digits} digits)")
        if isinstance(value, float) and not math.isfinite(value):
            raise CalculatorError(f"result is {value} (overflow or undefined)")
        return value


def format_number(value: int | float) -> str:
    """Integers exactly; floats with 15 significant digits (0.1 + 0.2 -> 0.3)."""
    if isinstance(value, int):
        return str(value)
    return format(value, ".15g")


class CalculatorTool:
    name = "calculator"
    description = (
        "Evaluates an arithmetic expression: + - * / // % ** (or ^), parentheses, pi, e and "
        "sqrt, exp, log, sin, cos, tan, factorial, gcd, comb, min, max, abs, round, floor, ceil."
    )
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "e.g. (3 + 4) * sqrt(2)"}},
        "required": ["expression"],
    }

    def __init__(self, max_exponent: int = 10000, max_result_digits: int = 4000,
                 max_expression_chars: int = 2000):
        self.evaluator = SafeEvaluator(max_exponent, max_result_digits)
        self.max_expression_chars = max_expression_chars

    def call(self, args: Mapping[str, Any]) -> ToolResult:
        start = time.monotonic()
        expression = string_argument(args, "expression", self.name)
        if isinstance(expression, ToolResult):
            return expression
        if not expression.strip():
            return ToolResult(ToolStatus.INVALID_CALL, "calculator: empty expression")
        if len(expression) > self.max_expression_chars:
            return ToolResult(
                ToolStatus.ERROR,
                f"calculator error: expression too long ({len(expression)} characters, "
                f"limit {self.max_expression_chars})",
            )
        try:
            text = format_number(self.evaluator.evaluate(expression))
            status = ToolStatus.OK
        except CalculatorError as e:
            text, status = f"calculator error: {e}", ToolStatus.ERROR
        except (OverflowError, RecursionError, MemoryError) as e:
            text, status = f"calculator error: {type(e).__name__}: {e}", ToolStatus.ERROR
        return ToolResult(status, text, elapsed_s=time.monotonic() - start)
