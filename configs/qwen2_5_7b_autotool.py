"""Qwen2.5-7B-Instruct + AutoTool: function calling, SFT warm-up then RL, 64 prompts x 8, 4k.

Nothing downloads. ``model.init_from`` / ``data.tokenizer``: a local HF Qwen2.5-7B-Instruct
directory (placeholder below; same dims and memory layout as ``configs/qwen2_5_7b_tao_rl.py``).
``data.jsonl_path``: your function-calling task file, one JSON object per line (see
``toolrl_jax/data/records.py``)::

    {"id": "fc-1", "task": "function_call", "question": "<user request + tool schema>",
     "answer": "{\\"name\\": \\"get_weather\\", \\"arguments\\": {\\"city\\": \\"Paris\\"}}",
     "difficulty": "", "trajectory": "<optional long-mode gold completion for the warm-up>"}

``task="function_call"`` rows are graded by ``verifiers.py:verify_function_call`` (same tool name
and JSON arguments). Pipeline: SFT warm-up (AutoTool stage 1: both answer modes), then RL with the
AutoTool recipe (asymmetric short/long reward, decoupled entropy constraints, learnable
``beta_long``), then held-out evaluation of both policies and ``report.md``.

v5p-32 (16 chips, 95 GiB HBM each), mesh fsdp=4 x tensor=4 (28 heads divide by 4, not by 8):

    TPU_NAME=my-v5p-32 ZONE=us-east5-a bash launch/tpu_vm.sh run configs/qwen2_5_7b_autotool.py \\
        --config.model.init_from=/mnt/ckpt/Qwen2.5-7B-Instruct \\
        --config.data.tokenizer=/mnt/ckpt/Qwen2.5-7B-Instruct \\
        --config.data.jsonl_path=/mnt/data/function_calls.jsonl --workdir gs://my-bucket/runs/autotool

The work dir is a ``gs://`` URI here (a file system every host mounts works too): checkpoints,
metrics, TensorBoard, rollouts, evaluations, reports and the HF exports go there. Each host builds
its dataset, corpus and tokenizer copies in a local scratch dir (``$TOOLRL_JAX_SCRATCH``, default
``/tmp/toolrl_jax_scratch``); process 0's tokenizer is kept in the work dir for the others.

8 x H100 80 GiB, mesh fsdp=2 x tensor=4:

    bash launch/gpu_node.sh configs/qwen2_5_7b_autotool.py \\
        --config.mesh.fsdp=2 --config.mesh.tensor=4 --config.train.micro_batch_size=2 \\
        --config.rollout.slots=128 --config.model.init_from=/data/Qwen2.5-7B-Instruct \\
        --config.data.tokenizer=/data/Qwen2.5-7B-Instruct \\
        --config.data.jsonl_path=/data/function_calls.jsonl --workdir runs/autotool

Plan either layout on a CPU first (the RL train step; the SFT step, 64 rows of
``data.sft_max_len`` = 2048 tokens without old/ref log-probs, is smaller):

    python -m toolrl_jax.main --config configs/qwen2_5_7b_autotool.py --config.mode=plan
    python -m toolrl_jax.main --config configs/qwen2_5_7b_autotool.py --config.mode=plan \\
        --config.plan.devices=8 --config.plan.hbm_gib=80 \\
        --config.mesh.fsdp=2 --config.mesh.tensor=4 --config.train.micro_batch_size=2 \\
        --config.rollout.slots=128

Planner output (XLA:CPU buffer assignment of the full 28-layer RL train step and of the rollout's
decode segment and whole-batch append, per device, GiB; the same as TAO-RL's: the recipe changes
the loss, not the memory):

    layout                     params AdamW act+temp train peak | slots KV cache rollout+state  HBM
    v5p-32, fsdp=4 x tensor=4   1.77   3.55   8.37    13.70     |  512   7.00      65.60     95: fits
    8xH100, fsdp=2 x tensor=4   3.55   7.09  12.69    23.34     |  128   3.50      45.65     80: fits
"""

from toolrl_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "qwen2_5_7b_tao_rl")  # Qwen2.5-7B dims, mesh, rollout shapes
    c.name = "qwen2_5_7b_autotool"
    c.mode = "pipeline"

    c.data.source = "jsonl"
    c.data.jsonl_path = "/path/to/function_calls.jsonl"  # placeholder: your task file
    c.data.sft_max_len = 2048
    c.tools.enabled = ("python", "calculator")

    c.sft.steps = 200
    c.sft.batch_size = 64
    c.sft.learning_rate = 5e-6
    c.sft.warmup_steps = 10

    c.rl.recipe = "autotool"
    c.optim.learning_rate = 1e-6
    c.train.steps = 200
    c.eval.prompts_per_batch = 64
    c.eval.max_items = 512
    return c
