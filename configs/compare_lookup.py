"""Comparison, family (b): multi-hop lookup with search — GRPO, TEPO sparse and dense.

    python -m toolrl_jax.main --config configs/compare_lookup.py

Synthetic multi-hop lookup over a generated world (easy: one fact; hard: two hops) with BM25
search over the world's passages (``tools.search``, one passage per call), a 4-layer × 128
model from scratch: one SFT warm-up calling search on 70 % of its examples (``data.sft_p_long``;
see configs/compare_math.py for why not 50 %), then the same RL budget per recipe and seed;
sampled evaluation (avg@4 at the rollout temperature) on 1,000 held-out items, intervals over
items and seeds and a verdict per claim in ``compare.md``.

Not yet measured as a whole. On the mixed arithmetic + lookup task (configs/compare.py) GRPO
did not gain in 25–75 steps at lr 1e-4 to 5e-4, greedy or sampled (0.365 → 0.341 sampled after
25 steps; docs/methods.md): part of the lookups are
answered from memory, which competes with the sampled search path.
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
    c.tools.enabled = ("search",)
    c.optim.learning_rate = 1e-4
    c.train.steps = 100
    c.compare.recipes = ("grpo", "tepo_sparse", "tepo_dense")
    c.compare.seeds = (0, 1, 2)
    return c
