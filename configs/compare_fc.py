"""Comparison, family (c): function calling — GRPO, AutoTool and the always-think start.

    python -m toolrl_jax.main --config configs/compare_fc.py

``configs/autotool_fc.py``'s task and model (synthetic function-calling items graded by BFCL's
AST checker, Hermes calls, AutoTool's auto-think template, a 4-layer × 128 model from scratch):
one SFT warm-up with think / no-think drawn at random, then GRPO and AutoTool from it per seed;
beside them the "distilled" start — the same warm-up always in think mode
(``compare.distilled_start``), no RL. Sampled evaluation (avg@4 at the rollout temperature)
on 400 held-out items; intervals over items and seeds and a verdict per claim in
``compare.md``.

Measured (2026-11-30, 70 min on 2 cores beside other runs; docs/results/compare_fc.md): call
items ~0 for every policy — the model learns the format but not to copy argument values out
of its prompt — so accuracy moves only on the 40 irrelevance items (GRPO +0.005, 0.950 →
0.990 there) and AutoTool's claims cannot be tested here (docs/methods.md, "Family (c)").
"""

from toolrl_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "autotool_fc")
    c.name = "compare_fc"
    c.mode = "compare"
    # 400 items × 4 samples: at the ~10 % accuracies of this family a ±3-point interval on a
    # level (prompts of ~300-500 tokens make 1,000 items × 4 cost ~3 min per evaluation here).
    c.data.num_heldout = 400
    # Sampled avg@4 at rollout.temperature: what RL optimises (configs/compare_math.py).
    c.eval.greedy = False
    c.eval.samples = 4
    c.compare.recipes = ("grpo", "autotool")
    c.compare.seeds = (0, 1, 2)
    c.compare.distilled_start = True
    return c
