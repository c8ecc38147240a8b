"""Overrides that shrink any shipped config to a seconds-long CPU run (tests only)."""

from __future__ import annotations

TINY_OVERRIDES = {
    "model.hidden_size": 32,
    "model.intermediate_size": 64,
    "model.num_layers": 1,
    "model.num_heads": 2,
    "model.num_kv_heads": 1,
    "model.head_dim": 0,
    "model.vocab_size": 512,
    "model.param_dtype": "float32",
    "model.dtype": "float32",
    "model.init_from": "",  # random init: real-scale configs point at a checkpoint dir
    "data.source": "synthetic",  # ... and at task files / corpora that only exist on their hosts
    "data.tokenizer": "",  # the demo BPE trained in the work dir
    "data.sft_max_len": 208,
    "tools.search.corpus_path": "@generated",  # the synthetic lookup task's corpus
    "data.num_train": 64,
    "data.num_heldout": 8,
    "data.demo_vocab_size": 400,
    "sft.steps": 2,
    "sft.batch_size": 4,
    "rollout.prompts_per_step": 2,
    "rollout.group_size": 2,
    "rollout.max_prompt_len": 176,  # the tiny tokenizer has few merges: prompts run long
    "rollout.max_cache_len": 320,
    "rollout.max_new_tokens": 12,
    "rollout.segment_len": 12,
    "train.steps": 2,
    "train.mini_batches": 1,
    "train.micro_batch_size": 0,
    "train.checkpoint_every": 1,
    "train.save_rollouts_every": 1,
    "eval.max_items": 4,
    "compare.seeds": (0,),
    "eval.prompts_per_batch": 4,
    "mesh.data": 1,
    "mesh.fsdp": 1,
    "mesh.tensor": 1,
    "plan.devices": 0,  # mode=plan: plan on the test process's devices, in process
    "plan.slice_layers": 0,
}


# Function-calling configs on top of TINY_OVERRIDES: their prompts list every function's JSON spec
# (up to ~520 tokens with a 1024-token demo BPE; ~760 with the 400-token one), so the tiny prompt
# and warm-up budgets would drop or refuse every item.
FUNCTION_CALLING_OVERRIDES = {
    "data.demo_vocab_size": 1024,
    "model.vocab_size": 1024,
    "data.sft_max_len": 640,
    "rollout.max_prompt_len": 544,
    "rollout.max_cache_len": 640,
    "model.max_position": 1024,
}
# Shipped configs that need more than TINY_OVERRIDES, by file name.
CONFIG_OVERRIDES = {"autotool_fc.py": FUNCTION_CALLING_OVERRIDES,
                    "compare_fc.py": FUNCTION_CALLING_OVERRIDES}


def tiny_overrides(workdir: str, **extra) -> dict:
    """Overrides for ``toolrl_jax.config.load``; keys a config lacks are skipped by the caller."""
    return {**TINY_OVERRIDES, "workdir": workdir, **extra}
