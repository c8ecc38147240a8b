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

from toolrl_jax.config import default_config_dict


def get_config():
    c = default_config_dict()
    c.name = "compare"
    c.mode = "compare"

    c.model.architecture = "qwen2"
    c.model.vocab_size = 1024
    c.model.hidden_size = 128
    c.model.intermediate_size = 384
    c.model.num_layers = 4
    c.model.num_heads = 4
    c.model.num_kv_heads = 2
    c.model.tie_embeddings = True
    c.model.max_position = 512

    c.data.source = "synthetic"
    c.data.tasks = ("arithmetic", "lookup")
    c.data.num_train = 4000
    c.data.num_heldout = 200
    c.data.demo_vocab_size = 1024
    # Longest warm-up example (2-hop lookup / 5-term sum, long mode) is ~200 tokens; a smaller
    # limit drops exactly the tool-using trajectories of the hard items.
    c.data.sft_max_len = 208

    c.tools.enabled = ("calculator", "search")
    c.tools.search.corpus_path = "@generated"  # the lookup task's corpus, written at start-up
    c.tools.search.top_k = 1  # one passage: short contexts for a tiny model

    c.sft.steps = 800  # copying (question → call, result → answer) emerges after ~400 steps
    c.sft.batch_size = 32
    c.sft.learning_rate = 2e-3
    c.sft.warmup_steps = 20

    c.rollout.prompts_per_step = 8
    c.rollout.group_size = 8
    c.rollout.max_prompt_len = 128
    c.rollout.max_new_tokens = 96  # sampled tokens; a 2-hop lookup in long mode needs ~70
    c.rollout.max_cache_len = 304  # prompt + sampled + up to 3 results of <= 32 tokens
    c.rollout.segment_len = 96
    c.rollout.max_tool_calls = 3
    c.rollout.max_result_tokens = 32
    c.rollout.length_bucket = 16

    c.rl.recipe = "grpo"  # replaced per run by compare.recipes
    c.optim.learning_rate = 2e-4
    c.train.steps = 25
    c.train.mini_batches = 2
    c.train.logit_chunk = 64
    c.train.checkpoint_every = 5
    c.train.save_rollouts_every = 10

    c.compare.recipes = ("grpo", "dapo", "tepo_sparse", "tepo_dense", "tao_rl", "autotool")
    c.compare.seeds = (0, 1)
    c.eval.prompts_per_batch = 50
    return c
