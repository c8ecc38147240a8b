"""Comparison, family (b): multi-hop lookup with search — GRPO, TEPO sparse and dense.

    python -m toolrl_jax.main --config configs/compare_lookup.py

Synthetic multi-hop lookup over a generated world (easy: one fact; hard: two hops) with BM25
search over the world's passages (``tools.search``, one passage per call), a 4-layer × 128
model from scratch: one SFT warm-up calling search on 70 % of its examples (``data.sft_p_long``;
see configs/compare_math.py for why not 50 %), then the same RL budget per recipe and seed;
sampled evaluation (avg@4 at the rollout temperature) on 1,000 held-out items, intervals over
items and seeds and a verdict per claim in ``compare.md``.

Measured (2026-11-30, 57 min on 2 cores beside another run; docs/results/compare_lookup.md):
warm-up 0.447 → GRPO 0.494 (+0.047, interval +0.015 to +0.074, 3 seeds); TEPO sparse −90 %
calls at 0.453; TEPO dense 0.488. Without ``data.rl_only_fraction`` (every train question in
the warm-up) RL sampled memorised answers and learnt only to stop searching: +1.1 (0.0 to
+2.3), 0.02 calls per item (docs/methods.md, "Family (b)").
"""

from toolrl_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "compare")
    c.name = "compare_lookup"
    c.data.tasks = ("lookup",)
    c.data.num_heldout = 1000
    # Sampled avg@4 at rollout.temperature: what RL optimises (configs/compare_math.py).
    c.eval.greedy = False
    c.eval.samples = 4
    c.data.sft_p_long = 0.7
    # Half the train split (by person for two-hop items, data/splits.py:stage_key) is kept out
    # of the warm-up and read only as RL prompts: with every train question in the warm-up, RL
    # sampled memorised answers and learnt only to stop searching (docstring above).
    c.data.rl_only_fraction = 0.5
    c.tools.enabled = ("search",)
    c.optim.learning_rate = 2e-4  # as configs/compare_math.py (measured there)
    c.train.steps = 100
    c.compare.recipes = ("grpo", "tepo_sparse", "tepo_dense")
    c.compare.seeds = (0, 1, 2)
    return c
