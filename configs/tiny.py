"""Tiny CPU-size model: smoke tests and plans.

    python -m toolrl_jax.main --config configs/tiny.py

Prints the parameter count (~0.1 M), memory per device and the sharding of each weight.
"""

from toolrl_jax.config import default_config_dict


def get_config():
    c = default_config_dict()
    c.name = "tiny"
    c.mode = "plan"
    c.model.architecture = "qwen2"
    c.model.vocab_size = 512
    c.model.hidden_size = 64
    c.model.intermediate_size = 128
    c.model.num_layers = 2
    c.model.num_heads = 4
    c.model.num_kv_heads = 2
    c.model.max_position = 2048
    c.rollout.prompts_per_step = 8
    c.rollout.group_size = 4
    return c
