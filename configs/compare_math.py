"""Comparison, family (a): math-style problems with the Python tool — GRPO, DAPO, TAO-RL, TEPO.

    python -m toolrl_jax.main --config configs/compare_math.py

The demo's task and budget (``configs/demo.py``: synthetic arithmetic — easy items a small model
can answer directly, hard ones that need the tool — a 4-layer × 128 model from scratch, 600 SFT
steps, 100 RL steps of 8 prompts × 8 samples at lr 5e-4), with the Python tool in the bubblewrap
sandbox (the model writes ``<python>print(expr)</python>``): one SFT warm-up, then the same RL
budget per recipe and seed; greedy evaluation on 1,000 held-out items (a ±3-point 95 % interval
at p ≈ 0.5 needs ~1,000), intervals over items and seeds in ``compare.md`` (eval/bootstrap.py)
with a verdict per paper claim (experiment/claims.py).

The warm-up calls the tool on 70 % of its examples, whatever the difficulty (``data.sft_p_long``):
at 50 % the mode's first token sits at p ≈ 0.5 and greedy evaluation flips between all-call and
no-call on numerical noise (docs/methods.md, "Why RL loses held-out accuracy here").
"""

from toolrl_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "demo")
    c.name = "compare_math"
    c.mode = "compare"
    c.data.num_heldout = 1000
    c.data.arithmetic_tool = "python"
    c.data.sft_p_long = 0.7
    # `<python>print(...)</python>` is 5 tokens longer than the calculator's call: keep the same
    # examples (every one but the long-mode 5-term sums, as in the demo).
    c.data.sft_max_len = 128
    c.tools.enabled = ("python",)
    c.compare.recipes = ("grpo", "dapo", "tao_rl", "tepo_sparse", "tepo_dense")
    c.compare.seeds = (0, 1, 2)
    return c
