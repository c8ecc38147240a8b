"""Comparison, family (a): math-style problems with the Python tool — GRPO, DAPO, TAO-RL, TEPO.

    python -m toolrl_jax.main --config configs/compare_math.py

Synthetic arithmetic (easy items a small model can answer directly; hard ones — multi-digit
products, long sums — that need the tool), the Python tool in the bubblewrap sandbox (the
model writes ``<python>print(expr)</python>``), a 4-layer × 128 model from scratch: one SFT
warm-up, then the same RL budget per recipe and seed; greedy evaluation on 1,000 held-out items
(a ±3-point 95 % interval at p ≈ 0.3 needs ~900), intervals over items and seeds in
``compare.md`` (eval/bootstrap.py) with a verdict per paper claim (experiment/claims.py).
"""

from toolrl_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "compare")
    c.name = "compare_math"
    c.data.tasks = ("arithmetic",)
    c.data.num_heldout = 1000
    c.tools.enabled = ("python",)
    c.compare.recipes = ("grpo", "dapo", "tao_rl", "tepo_sparse", "tepo_dense")
    c.compare.seeds = (0, 1, 2)
    return c
