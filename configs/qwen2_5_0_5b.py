"""Qwen2.5-0.5B architecture (numbers from its public config.json), bf16, FSDP over all devices.

    python -m toolrl_jax.main --config configs/qwen2_5_0_5b.py
    python -m toolrl_jax.main --config configs/qwen2_5_0_5b.py --config.mesh.fsdp=4 --config.mesh.tensor=2

In ``plan`` mode this resolves the mesh and prints ~494 M parameters, per-device memory for
params + AdamW state + the rollout KV cache, and every weight's sharding, without allocating.
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
    c.model.param_dtype = "bfloat16"
    c.model.dtype = "bfloat16"
    c.mesh.data = -1  # every device not used by fsdp/tensor goes to data parallelism
    c.rollout.prompts_per_step = 64
    c.rollout.group_size = 8
    c.rollout.max_prompt_len = 512
    c.rollout.max_new_tokens = 2048
    c.rollout.max_cache_len = 4096
    c.optim.learning_rate = 1e-6
    return c
