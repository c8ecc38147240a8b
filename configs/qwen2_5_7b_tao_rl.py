"""Qwen2.5-7B-Instruct + TAO-RL: math with a sandboxed Python tool, GRPO 64 prompts x 8 samples, 4k.

Nothing downloads. Put the HF checkpoint (config.json, *.safetensors, tokenizer files) on every
host and point ``model.init_from`` / ``data.tokenizer`` at it; the dims below are Qwen2.5-7B's
(its config.json: 28 layers, hidden 3584, 28 heads / 4 KV heads, intermediate 18944, vocab
152064, untied head, q/k/v bias, rope theta 1e6). The prompts default to the 200-row GSM8K subset
shipped in ``toolrl_jax/data/assets/gsm8k`` (a smoke set): point ``data.gsm8k_path`` at the full
GSM8K train JSONL, or set ``data.source=jsonl`` + ``data.jsonl_path`` for your own math records.

Memory layout: fp32 master weights + fp32 AdamW moments sharded like them (FSDP), bf16 compute,
``scan_layers`` + ``remat=full`` (one layer's activations live at a time), 64 x 8 rows per step in
2 mini-batches of 256, micro-batches of ``train.micro_batch_size`` rows. Tensor parallelism splits
attention by whole heads: Qwen's 28 heads (4 KV heads) divide 1, 2 or 4 ways, not 8 (28/8 = 3.5:
a head would straddle two chips). ``tensor=4`` (7 query heads + 1 KV head per chip): the planner
puts it below pure FSDP (fsdp=16: 17.9 GiB per chip vs 13.7 GiB at fsdp=4 x tensor=4; README
"Planning a real run"); both fit.

v5p-32 (4 hosts x 4 chips, 95 GiB HBM each; 16 JAX devices), mesh fsdp=4 x tensor=4:

    TPU_NAME=my-v5p-32 ZONE=us-east5-a bash launch/tpu_vm.sh setup
    TPU_NAME=my-v5p-32 ZONE=us-east5-a bash launch/tpu_vm.sh run configs/qwen2_5_7b_tao_rl.py \\
        --config.model.init_from=/mnt/ckpt/Qwen2.5-7B-Instruct \\
        --config.data.tokenizer=/mnt/ckpt/Qwen2.5-7B-Instruct --workdir gs://my-bucket/runs/tao_rl

The work dir is a ``gs://`` URI here (a file system every host mounts works too): checkpoints,
metrics, TensorBoard, rollouts, evaluations, reports and the HF exports go there. Each host builds
its dataset, corpus and tokenizer copies in a local scratch dir (``$TOOLRL_JAX_SCRATCH``, default
``/tmp/toolrl_jax_scratch``); process 0's tokenizer is kept in the work dir for the others.

8 x H100 80 GiB (one host, one process), mesh fsdp=2 x tensor=4:

    bash launch/gpu_node.sh configs/qwen2_5_7b_tao_rl.py \\
        --config.mesh.fsdp=2 --config.mesh.tensor=4 --config.train.micro_batch_size=2 \\
        --config.rollout.slots=128 \\
        --config.model.init_from=/data/Qwen2.5-7B-Instruct \\
        --config.data.tokenizer=/data/Qwen2.5-7B-Instruct --workdir runs/tao_rl

Plan either layout on a CPU first (compiles the real train step; no weights allocated):

    python -m toolrl_jax.main --config configs/qwen2_5_7b_tao_rl.py --config.mode=plan
    python -m toolrl_jax.main --config configs/qwen2_5_7b_tao_rl.py --config.mode=plan \\
        --config.plan.devices=8 --config.plan.hbm_gib=80 \\
        --config.mesh.fsdp=2 --config.mesh.tensor=4 --config.train.micro_batch_size=2 \\
        --config.rollout.slots=128

Planner output (XLA:CPU buffer assignment of the full 28-layer train step and of the rollout's
decode segment and whole-batch append, per device, GiB):

    layout                     params AdamW act+temp train peak | slots KV cache rollout+state  HBM
    v5p-32, fsdp=4 x tensor=4   1.77   3.55   8.37    13.70     |  512   7.00      65.60     95: fits
    8xH100, fsdp=2 x tensor=4   3.55   7.09  12.69    23.34     |  128   3.50      45.65     80: fits

On the H100 layout all 512 rows in 512 slots would need 118.97 GiB during the rollout (14 GiB of
KV cache, and a whole-batch append over a 4k window); 128 slots fill and refill continuously. For
comparison, pure FSDP (fsdp=16 / fsdp=8, tensor=1) needs 17.9 / 26.7 GiB, and no remat on the
v5p-32 needs 60.4 GiB. The CPU compile uses XLA attention (TPU: splash, GPU: cuDNN
flash, which never hold the [heads, T, T] scores), so these are upper estimates; rerun the planner
after changing the model code.
"""

from toolrl_jax.config import default_config_dict

# Placeholder: a local directory holding the HF Qwen2.5-7B-Instruct checkpoint (no download).
CHECKPOINT = "/path/to/Qwen2.5-7B-Instruct"


def qwen2_5_7b(c):
    """Qwen2.5-7B's architecture (public config.json), fp32 masters, bf16 compute, scanned."""
    c.model.architecture = "qwen2"
    c.model.vocab_size = 152064
    c.model.hidden_size = 3584
    c.model.intermediate_size = 18944
    c.model.num_layers = 28
    c.model.num_heads = 28
    c.model.num_kv_heads = 4
    c.model.head_dim = 128
    c.model.rope_theta = 1000000.0
    c.model.rms_norm_eps = 1e-6
    c.model.tie_embeddings = False
    c.model.qkv_bias = True
    c.model.max_position = 32768
    c.model.param_dtype = "float32"  # master weights (and AdamW moments) in fp32
    c.model.dtype = "bfloat16"  # compute
    c.model.scan_layers = True  # one compiled layer body; remat shows in CPU plans too
    c.model.init_from = CHECKPOINT
    c.data.tokenizer = CHECKPOINT
    return c


def get_config():
    c = qwen2_5_7b(default_config_dict())
    c.name = "qwen2_5_7b_tao_rl"
    c.mode = "rl"

    c.data.source = "gsm8k"
    c.tools.enabled = ("python",)

    c.mesh.data = -1
    c.mesh.fsdp = 4
    c.mesh.tensor = 4

    c.rollout.prompts_per_step = 64
    c.rollout.group_size = 8
    c.rollout.max_prompt_len = 1024
    c.rollout.max_new_tokens = 2560
    c.rollout.max_cache_len = 4096  # prompt + sampled + up to 4 results of <= 128 tokens
    c.rollout.max_tool_calls = 4
    c.rollout.max_result_tokens = 128
    c.rollout.segment_len = 128
    c.rollout.length_bucket = 128
    c.rollout.temperature = 1.0

    c.rl.recipe = "tao_rl"
    c.optim.learning_rate = 1e-6
    c.optim.warmup_steps = 10
    c.optim.weight_decay = 0.01
    c.train.steps = 200
    c.train.mini_batches = 2
    c.train.micro_batch_size = 4  # one row per (data x fsdp) group per micro-step
    c.train.remat = "full"
    c.train.logit_chunk = 512
    c.train.checkpoint_every = 10

    c.plan.devices = 16  # v5p-32: 16 chips
    c.plan.hbm_gib = 95.0
    return c
