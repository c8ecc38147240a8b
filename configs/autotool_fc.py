"""AutoTool in its own setting on CPU: function calling with think / no-think modes.

    python -m toolrl_jax.main --config configs/autotool_fc.py

Synthetic function-calling items (``data/function_calling.py``; each brings its own JSON-schema
functions, rendered into the prompt by the Hermes syntax): easy — one call whose arguments are in
the question; hard — two parallel calls, or one call among distractor functions with a unit or
date conversion; irrelevant (counted as easy) — no function fits, the right answer is no call. A
call of the item's functions is the answer (never executed) and BFCL's AST checker grades it.

Pipeline: a demo BPE and a 4-layer Qwen2-style model from scratch; an SFT warm-up in AutoTool's
auto-think template (``sft.mode_tag``: a no-think target is ``<think></think>`` + the call, a
think target is ``<think>plan</think>`` + the call, ``data/fc_warmup.py``) with modes drawn at
random (p = 0.5, ignoring difficulty: RL is left to learn when thinking pays); then AutoTool RL
(+1 / +0.5 / −0.5 / −1 for correct-no-think / correct-think / wrong-think / wrong-no-think,
decoupled entropy constraints). ``report.md`` compares the SFT and RL policies on the held-out
split per difficulty: accuracy, thinking rate (``think_rate``; 1 − ``short_mode_frac``) and
tokens per item. Measured: 12 min 33 s on this 2-core machine under other jobs' load (11 min 40 s
user); the model learns the format but not to copy argument values out of its ~300-token prompts
at this budget, so RL mostly moves the thinking rate (docs/methods.md, AutoTool;
docs/results/autotool_fc_report.md).

With a real checkpoint, the warm-up labels come from the model itself (AutoTool's recipe): label
the train split with k no-think samples per item, then warm up on those labels —

    python -m toolrl_jax.main --config configs/autotool_fc.py --config.mode=label \\
        --config.model.init_from=<HF dir> --config.data.tokenizer=<HF dir> --workdir runs/fc_label
    python -m toolrl_jax.main --config configs/autotool_fc.py --config.model.init_from=<HF dir> \\
        --config.data.tokenizer=<HF dir> --config.data.sft_policy=labels \\
        --config.data.labels_path=runs/fc_label/labels.jsonl --workdir runs/fc

(a from-scratch model has nothing to label with: every no-think sample fails).
"""

from toolrl_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "demo")  # 4 x 128 Qwen2-style model, demo BPE of 1024 tokens
    c.name = "autotool_fc"
    # Pinned where configs/demo.py moved (2026-11-30) so this config still runs as measured.
    c.rollout.cache_windows = 4
    c.eval.greedy = True
    c.eval.samples = 1
    c.mode = "pipeline"

    c.data.tasks = ("function_call",)
    c.data.num_train = 2000
    c.data.num_heldout = 200  # 100 hard, 100 easy (20 of them irrelevant)
    c.data.sft_policy = "random"
    c.data.sft_p_long = 0.5
    c.data.sft_max_len = 640  # every warm-up example fits (longest ~560 tokens)

    c.tools.syntax = "hermes"  # <tool_call>{"name": ..., "arguments": {...}}</tool_call>
    c.tools.enabled = ()  # no executed tools: the item's own functions are the answer

    c.sft.mode_tag = True  # AutoTool's auto-think template
    # The format (tags, Hermes JSON, when no function fits) is learnt by ~120 steps (nll 0.3).
    # Copying argument values out of a ~300-token prompt is not learnt at this budget: 300 / 600
    # / 800 steps (batch 16 / 16 / 8; lr 3e-3 and 1e-2; width 128 and 64) all left easy and hard
    # call items at 0 held-out accuracy, so more warm-up steps here buy nothing.
    c.sft.steps = 150
    c.sft.batch_size = 16
    c.sft.learning_rate = 3e-3
    c.sft.warmup_steps = 20

    c.rollout.prompts_per_step = 8
    c.rollout.group_size = 8
    c.rollout.max_prompt_len = 544
    c.rollout.max_new_tokens = 96  # a think plan + two parallel calls is ~90 tokens
    c.rollout.max_cache_len = 640
    c.rollout.segment_len = 48
    c.rollout.max_tool_calls = 1  # the answer call
    c.rollout.length_bucket = 32

    c.rl.recipe = "autotool"
    # One round of P prompts per step (the preset draws 1.5 P): 1.5x the rollout rows would not
    # fit the 20-minute budget, for little gain while groups still vary. (The 33 s vs 4 s per
    # round first measured with 1.5 came from an engine sized for P x G rows, whose extra rows
    # queued through programs warm-up had not compiled; the RL engine now knows the oversampled
    # round and warms those up too: rl/recipes.py:rollout_rows.)
    c.rl.oversample_factor = 1.0
    c.optim.learning_rate = 3e-4
    c.train.steps = 40
    c.train.mini_batches = 2
    c.train.logit_chunk = 64
    c.train.checkpoint_every = 50
    # One padded length for every SFT and RL batch: prompt lengths vary from ~200 to ~520
    # tokens, and bucketed padding compiled a new step for each length met (~20 s each here).
    c.train.pad_to = "max"

    c.model.max_position = 1024
    c.eval.prompts_per_batch = 50
    return c
