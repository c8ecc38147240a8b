"""The embedded demo: a tiny tool-using agent trained from scratch on CPU in minutes.

    python -m toolrl_jax.main --config configs/demo.py

Pipeline: builds synthetic arithmetic tasks (easy items a small model can answer directly, hard
ones — multi-digit products, long sums — that need the calculator), trains a byte-level BPE and
a 4-layer Qwen2-style model from scratch with an SFT warm-up whose mode (direct answer vs.
calculator call) ignores difficulty, then RL with the **AutoTool** recipe (asymmetric reward
+1 / +0.5 / −0.5 / −1 for correct-short / correct-long / wrong-long / wrong-short, decoupled
entropy constraints). The run should show held-out accuracy rising on hard items (the policy
learns to call the calculator there) while easy items stay short; ``report.md`` in the work dir
compares the SFT and RL policies per difficulty. Kill it at any point and rerun: it resumes.
"""

from toolrl_jax.config import default_config_dict


def get_config():
    c = default_config_dict()
    c.name = "demo"
    c.mode = "pipeline"

    c.model.architecture = "qwen2"
    c.model.vocab_size = 1024  # = data.demo_vocab_size
    c.model.hidden_size = 128
    c.model.intermediate_size = 384
    c.model.num_layers = 4
    c.model.num_heads = 4
    c.model.num_kv_heads = 2
    c.model.tie_embeddings = True
    c.model.max_position = 512

    c.data.source = "synthetic"
    c.data.tasks = ("arithmetic",)
    c.data.num_train = 4000
    c.data.num_heldout = 200
    c.data.demo_vocab_size = 1024
    # Warm-up examples over 112 tokens are dropped: that is every long-mode 5-term sum (up to 161
    # tokens), so the warm-up teaches tool use on products but not on long sums. Measured both
    # ways: at 112 the SFT policy is competent enough for RL to gain; at 176 (all examples kept)
    # 500-600 SFT steps leave copying too weak and RL does not improve on it (docs/methods.md).
    c.data.sft_max_len = 112

    c.tools.enabled = ("calculator",)

    # ~600 steps is where the model learns to copy the question into the call and the result into
    # the answer (the loss drops sharply around step 400): fewer leaves tool use useless.
    c.sft.steps = 600
    c.sft.batch_size = 32
    c.sft.learning_rate = 3e-3
    c.sft.warmup_steps = 20

    c.rollout.prompts_per_step = 8
    c.rollout.group_size = 8
    c.rollout.max_prompt_len = 96
    c.rollout.max_new_tokens = 48
    c.rollout.max_cache_len = 192
    c.rollout.segment_len = 48
    c.rollout.max_tool_calls = 2
    c.rollout.max_result_tokens = 16
    c.rollout.length_bucket = 16
    c.rollout.temperature = 1.0

    c.rl.recipe = "autotool"
    c.optim.learning_rate = 5e-4
    c.optim.warmup_steps = 0
    c.train.steps = 100
    c.train.ppo_epochs = 1
    c.train.mini_batches = 2
    c.train.logit_chunk = 64
    c.train.checkpoint_every = 5
    c.train.save_rollouts_every = 10

    c.eval.prompts_per_batch = 50
    return c
