"""BFCL single-turn function calling (AST accuracy), AutoTool's own benchmark setting.

    python -m toolrl_jax.main --config configs/bfcl_eval.py --config.model.init_from=<HF dir> \\
        --config.data.tokenizer=<HF dir> --workdir runs/bfcl

Greedy evaluation of a checkpoint on the five single-turn categories of BFCL v4 shipped in
``toolrl_jax/data/assets/bfcl/`` (simple_python 400, multiple 200, parallel 200,
parallel_multiple 200, irrelevance 240 items; Apache-2.0). Each item brings its own functions: a
chat template that reads ``tools`` (Qwen2.5, Llama-3.1) renders them, else the Hermes description
is written into the system message. A turn that calls the item's functions ends the rollout (the
calls are the answer, never executed) and BFCL's AST checker (``verifiers.py:check_calls``)
grades all calls of that turn: per-category accuracy is printed and written to
``eval_policy.json`` (``benchmarks``).

``model.init_from`` may be an HF directory or a ``.gguf`` file: the weights and the architecture
(sizes, RoPE, tied embeddings) are read from it, not from ``model.*``, but the run checks the
tokenizer against ``model.vocab_size`` and the cache length against ``model.max_position``, so
set those to the checkpoint's (``configs/smollm2_bfcl.py`` sets all of ``model.*`` for SmolLM2's
GGUF).
"""

import os

from toolrl_jax.config import default_config_dict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BFCL_DIR = os.path.join(REPO, "toolrl_jax", "data", "assets", "bfcl")
CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance")


def get_config():
    c = default_config_dict()
    c.name = "bfcl_eval"
    c.mode = "eval"
    c.tools.syntax = "hermes"  # <tool_call>{"name": ..., "arguments": {...}}</tool_call>
    c.tools.enabled = ()
    c.eval.files = tuple(f"{cat}={os.path.join(BFCL_DIR, f'BFCL_v4_{cat}.json')}"
                         for cat in CATEGORIES)
    c.eval.eval_split_too = False
    c.eval.max_items = 0  # every item
    c.eval.prompts_per_batch = 16
    c.rollout.max_prompt_len = 2048  # the longest items list several long function specs
    c.rollout.max_new_tokens = 256
    c.rollout.max_cache_len = 2560
    c.rollout.segment_len = 64
    c.rollout.max_tool_calls = 1
    c.model.max_position = 32768  # Qwen2.5 / Llama-3.1 contexts (set to the checkpoint's)
    return c
