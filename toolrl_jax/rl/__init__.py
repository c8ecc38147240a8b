"""RL core: pure functions for logprobs/entropy, tool-boundary entropy, advantages, losses,
shaping, filters and rewards, and the named recipes that compose them (see recipes.py)."""

from toolrl_jax.rl.entropy import hidden_to_logp_entropy, logits_to_logp_entropy
from toolrl_jax.rl.filters import FilterResult, RefillRule, group_rows, refill
from toolrl_jax.rl.recipes import Recipe, RewardInputs, Rewards, make_recipe
from toolrl_jax.rl.tool_entropy import call_entropy_deltas, tool_entropy_diagnostics

__all__ = [
    "FilterResult", "Recipe", "RefillRule", "RewardInputs", "Rewards", "call_entropy_deltas",
    "group_rows", "hidden_to_logp_entropy", "logits_to_logp_entropy", "make_recipe", "refill",
    "tool_entropy_diagnostics",
]
