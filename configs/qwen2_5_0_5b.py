"""Qwen2.5-0.5B architecture (numbers from its public config.json), FSDP over 8 devices.

    python -m toolrl_jax.main --config configs/qwen2_5_0_5b.py
    python -m toolrl_jax.main --config configs/qwen2_5_0_5b.py --config.mesh.fsdp=4 --config.mesh.tensor=2

``mode=plan`` compiles the real RL train step for 8 simulated devices (``plan.devices``; no
weights allocated) and prints ~494 M parameters, XLA's per-device memory (params, AdamW state,
activations + temporaries, total) against 16 GiB of HBM (``plan.hbm_gib``, a v5e chip), the
rollout KV-cache estimate and every weight's sharding. Params are fp32 master weights sharded
over ``fsdp`` (the AdamW moments alike); compute is bf16. With more than 8 devices
``mesh.data=-1`` adds data parallelism over groups of 8 (each group holds one sharded copy).

The shipped layout is a lesson in what the planner is for. Measured on the CPU (XLA:CPU buffer
assignment, 64 x 8 rows at 4k tokens, one row per device per micro-step):

* as shipped (no remat, layers unrolled): 92.1 GiB per device, 91.4 GiB of it activations and
  temporaries (every layer's [heads, T, T] attention scores kept for the backward pass):
  does not fit;
* ``--config.train.remat=full --config.model.scan_layers=True``: 6.99 GiB per device (params
  0.23, AdamW 0.46, activations + temp 6.30 GiB): fits.

(On the CPU, remat only shows with ``scan_layers``: XLA:CPU drops the barriers ``jax.checkpoint``
puts around unrolled layers; TPU and GPU compiles keep them.)
"""

from toolrl_jax.config import default_config_dict


def get_config():
    c = default_config_dict()
    c.name = "qwen2_5_0_5b"
    c.mode = "plan"
    c.model.architecture = "qwen2"
    c.model.vocab_size = 151936
    c.model.hidden_size = 896
    c.model.intermediate_size = 4864
    c.model.num_layers = 24
    c.model.num_heads = 14
    c.model.num_kv_heads = 2
    c.model.rope_theta = 1000000.0
    c.model.rms_norm_eps = 1e-6
    c.model.tie_embeddings = True
    c.model.qkv_bias = True
    c.model.max_position = 32768
    c.model.param_dtype = "float32"  # fp32 master weights; AdamW moments fp32, sharded alike
    c.model.dtype = "bfloat16"
    c.mesh.data = -1  # devices beyond fsdp*tensor replicate the sharded model (data parallel)
    c.mesh.fsdp = 8  # params, grads and optimizer state split 8 ways
    c.mesh.tensor = 1
    c.rollout.prompts_per_step = 64
    c.rollout.group_size = 8
    c.rollout.max_prompt_len = 512
    c.rollout.max_new_tokens = 2048
    c.rollout.max_cache_len = 4096
    c.optim.learning_rate = 1e-6
    c.train.mini_batches = 2
    c.train.micro_batch_size = 8  # one row per device per micro-step
    c.plan.devices = 8
    c.plan.hbm_gib = 16.0
    return c
