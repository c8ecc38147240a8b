"""One GRPO iteration from SmolLM2-135M-Instruct on GSM8K train items, on a CPU.

    python -m toolrl_jax.fetch smollm2
    python -m toolrl_jax.main --config configs/smollm2_grpo.py --workdir runs/smollm2_grpo

Starts from the GGUF (dequantized to fp32 master weights) with its own tokenizer and chat
template and the Python tool, samples 2 prompts x 4 rollouts, scores them, and takes one GRPO
update; ``metrics.jsonl`` reports the time of each phase (``time/generation_s``,
``time/tools_s``, ``time/rollout_s``, ``time/train_s``, ``time/step_s``; the rollout programs'
compile time is printed before step 1). Measured: README, "SmolLM2".

The full run on an accelerator (one host, e.g. a v5e-8 or 8 GPUs: data-parallel rollouts and
fp32-master / bf16-compute training; everything else as here):

    python -m toolrl_jax.main --config configs/smollm2_grpo.py --workdir /mnt/runs/smollm2_grpo \\
        --config.model.dtype=bfloat16 --config.mesh.data=-1 \\
        --config.rollout.prompts_per_step=64 --config.rollout.group_size=8 \\
        --config.rollout.max_new_tokens=512 --config.rollout.max_cache_len=1280 \\
        --config.train.steps=300 --config.train.mini_batches=4 --config.train.checkpoint_every=25 \\
        --config.eval.max_items=0
"""

import os

from toolrl_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "smollm2_eval")
    c.name = "smollm2_grpo"
    c.mode = "rl"
    c.data.gsm8k_path = os.path.join(os.path.dirname(c.data.gsm8k_path), "train.jsonl")

    c.rl.recipe = "grpo"
    c.rollout.prompts_per_step = 2
    c.rollout.group_size = 4
    c.rollout.temperature = 1.0
    c.rollout.max_new_tokens = 128
    c.rollout.max_cache_len = 640

    c.optim.learning_rate = 1e-6
    c.optim.warmup_steps = 0
    c.train.steps = 1
    c.train.mini_batches = 1
    c.train.micro_batch_size = 4  # bounds the [rows, T, 49152] logit chunks on a small host
    c.train.logit_chunk = 128
    c.train.checkpoint_every = 1
    c.train.save_rollouts_every = 1
    return c
