"""Sandboxed execution of model-written Python (see backends.py for the isolation levels)."""

from toolrl_jax.tools.sandbox.backends import BACKENDS, SandboxPlan
from toolrl_jax.tools.sandbox.choose import SandboxUnavailable, select_plan
from toolrl_jax.tools.sandbox.runner import SandboxOutcome, run_code

__all__ = [
    "BACKENDS", "SandboxOutcome", "SandboxPlan", "SandboxUnavailable", "run_code", "select_plan",
]
