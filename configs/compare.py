"""Method comparison: GRPO, DAPO, TEPO (sparse, dense), TAO-RL and AutoTool from one SFT checkpoint.

    python -m toolrl_jax.main --config configs/compare.py

CPU preset (≤ 45 min on 2 cores): synthetic arithmetic (calculator) + multi-hop lookup (BM25
search) tasks, a 4-layer × 128 model, one SFT warm-up (800 steps), then 25 RL steps of 8 prompts × 8 samples
per recipe and seed (2 seeds), each evaluated greedily on the held-out split of both tasks.
Writes ``compare.md`` (method × metric, mean ± std over seeds) and ``plots/compare_curves.png``.

Full size on a TPU/GPU: start from a real checkpoint and scale the budget, e.g.

    python -m toolrl_jax.main --config configs/compare.py \\
        --config.model.init_from=/ckpt/Qwen2.5-1.5B-Instruct \\
        --config.data.tokenizer=/ckpt/Qwen2.5-1.5B-Instruct \\
        --config.model.vocab_size=151936 --config.sft.steps=500 --config.train.steps=300 \\
        --config.rollout.prompts_per_step=64 --config.rollout.group_size=8 \\
        --config.rollout.max_new_tokens=1024 --config.rollout.max_cache_len=2048 \\
        --config.model.param_dtype=bfloat16 --config.model.dtype=bfloat16 --config.mesh.fsdp=8

(the model's own dims come from its config.json when ``init_from`` is set).
"""

from toolrl_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "demo")  # same model (4 × 128 Qwen2-style), tokenizer size, rollout sampling
    c.name = "compare"
    c.mode = "compare"
    # Pinned where configs/demo.py moved (2026-11-30) so this config still runs as measured.
    c.data.num_heldout = 200
    c.data.sft_p_long = 0.5
    c.rollout.cache_windows = 4
    c.train.checkpoint_every = 5
    c.eval.greedy = True
    c.eval.samples = 1

    c.data.tasks = ("arithmetic", "lookup")
    # Longest warm-up example (2-hop lookup / 5-term sum, long mode) is ~200 tokens; a smaller
    # limit drops exactly the tool-using trajectories of the hard items.
    c.data.sft_max_len = 208

    c.tools.enabled = ("calculator", "search")
    c.tools.search.corpus_path = "@generated"  # the lookup task's corpus, written at start-up
    c.tools.search.top_k = 1  # one passage: short contexts for a tiny model

    c.sft.steps = 800  # copying (question → call, result → answer) emerges after ~400 steps
    c.sft.learning_rate = 2e-3

    c.rollout.max_prompt_len = 128
    c.rollout.max_new_tokens = 96  # sampled tokens; a 2-hop lookup in long mode needs ~70
    c.rollout.max_cache_len = 304  # prompt + sampled + up to 3 results of <= 32 tokens
    c.rollout.segment_len = 96
    c.rollout.max_tool_calls = 3
    c.rollout.max_result_tokens = 32

    c.rl.recipe = "grpo"  # replaced per run by compare.recipes
    c.optim.learning_rate = 2e-4
    c.train.steps = 25

    c.compare.recipes = ("grpo", "dapo", "tepo_sparse", "tepo_dense", "tao_rl", "autotool")
    c.compare.seeds = (0, 1)
    return c
