"""CPU-mode test set-up: 8 fake devices (before any JAX op), fp32 matmuls, no network."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_default_matmul_precision", "highest")
# Implicit rank promotion ([B] + [B, T] silently broadcasting to [B, B, T] or the like) is an error
# in tests: shapes must be made to agree explicitly (x[:, None]).
jax.config.update("jax_numpy_rank_promotion", "raise")
