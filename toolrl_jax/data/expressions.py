"""Exact evaluation of calculator expressions, and the one number format tool results use.

The calculator expressions in synthetic tasks and GSM8K traces are evaluated here with
``fractions.Fraction`` so ``80000*1.5`` gives ``120000`` exactly rather than a float artefact: the
tool output written into an SFT trajectory must be what a correct calculator prints.
"""

from __future__ import annotations

import ast
import operator
from fractions import Fraction

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_MAX_EXPONENT = 64  # keeps `9**9**9`-style inputs from hanging the data build


class ExpressionError(ValueError):
    """An expression outside the supported arithmetic grammar, or one that cannot be evaluated."""


def _eval(node: ast.AST, expr: str) -> Fraction:
    if isinstance(node, ast.Expression):
        return _eval(node.body, expr)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        # Fraction(str) keeps decimal literals exact: Fraction("1.1") == 11/10.
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _eval(node.operand, expr)
        return value if isinstance(node.op, ast.UAdd) else -value
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, expr), _eval(node.right, expr)
        if isinstance(node.op, ast.Pow):
            if right.denominator != 1 or abs(right) > _MAX_EXPONENT:
                raise ExpressionError(f"exponent {right} in {expr!r} must be an integer <= 64")
            return left**int(right)
        op = _BINARY.get(type(node.op))
        if op is None:
            raise ExpressionError(f"operator {type(node.op).__name__} not allowed in {expr!r}")
        if right == 0 and isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)):
            raise ExpressionError(f"division by zero in {expr!r}")
        return Fraction(op(left, right))
    raise ExpressionError(f"unsupported syntax {type(node).__name__} in {expr!r}")


def evaluate(expr: str) -> Fraction:
    """Evaluates ``+ - * / // % **`` and parentheses over int/decimal literals, exactly."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"cannot parse expression {expr!r}: {e.msg}") from e
    return _eval(tree, expr)


def format_number(value: Fraction | int | float) -> str:
    """Integers print without a decimal point, other values with 15 significant digits — the
    format of the shipped calculator tool (``tools.calculator.format_number``)."""
    value = Fraction(value) if not isinstance(value, float) else Fraction(str(value))
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.15g}"


def calculate(expr: str) -> str:
    """What a correct calculator tool prints for ``expr``."""
    return format_number(evaluate(expr))
