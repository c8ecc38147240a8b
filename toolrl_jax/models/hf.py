"""Hugging Face interop: ``config.json`` + safetensors ⇄ our :class:`Decoder`.

``load_hf`` reads straight into (optionally sharded) parameters: each device slice is read from the
memory-mapped file, so a large checkpoint never sits whole in host memory. ``save_hf`` writes a
directory that ``transformers.AutoModelForCausalLM.from_pretrained`` loads with no missing or
unexpected keys.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from toolrl_jax.config import ModelConfig, RopeScalingConfig
from toolrl_jax.models.decoder import Decoder
from toolrl_jax.models.safetensors_io import open_tensors, save_tensors
from toolrl_jax.sharding import path_name, state_shardings

SUPPORTED = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}
# Buffers some exporters write that carry no parameters.
IGNORED_KEYS = re.compile(r".*rotary_emb\.inv_freq$")


class CheckpointError(ValueError):
    """An HF checkpoint we cannot load: unsupported architecture, missing or extra tensors."""


# ----------------------------------------------------------------------------- config
DTYPE_NAMES = ("float32", "bfloat16")


def check_dtype_name(dtype, what: str = "dtype") -> str:
    """``dtype`` must be a name (``"float32"`` / ``"bfloat16"``), as in the config; a dtype object
    such as ``jnp.float32`` is refused with a message saying what to pass instead."""
    if not isinstance(dtype, str):
        raise TypeError(f"{what} must be a dtype name, one of {list(DTYPE_NAMES)}; got "
                        f"{dtype!r} (pass e.g. dtype='float32', not jnp.float32)")
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"{what}={dtype!r} is not supported; choose one of {list(DTYPE_NAMES)}")
    return dtype


def model_config_from_hf(hf: dict, *, dtype: str = "float32", path: str = "") -> ModelConfig:
    check_dtype_name(dtype)
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED:
        raise CheckpointError(
            f"{path}: model_type '{model_type}' is not supported (supported: {sorted(SUPPORTED)})"
        )
    # transformers >= 5 nests RoPE settings in `rope_parameters`; older files use top-level keys.
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type in ("default", None):
        scaling = RopeScalingConfig()
    elif rope_type == "llama3":
        scaling = RopeScalingConfig(
            type="llama3",
            factor=float(rope["factor"]),
            low_freq_factor=float(rope["low_freq_factor"]),
            high_freq_factor=float(rope["high_freq_factor"]),
            original_max_position=int(rope["original_max_position_embeddings"]),
        )
    else:
        raise CheckpointError(f"{path}: rope type '{rope_type}' is not supported (default, llama3)")
    heads = hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
    qkv_bias = True if model_type == "qwen2" else bool(hf.get("attention_bias", False))
    if model_type == "llama" and hf.get("mlp_bias"):
        raise CheckpointError(f"{path}: llama with mlp_bias=true is not supported")
    cfg = ModelConfig(
        architecture=model_type,
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=0 if head_dim * heads == hf["hidden_size"] else head_dim,
        rope_theta=float(theta),
        rope_scaling=scaling,
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        qkv_bias=qkv_bias,
        max_position=int(hf.get("max_position_embeddings", 2048)),
        param_dtype=dtype,
        dtype=dtype,
    )
    cfg.validate("hf_config")
    return cfg


def model_config_to_hf(cfg: ModelConfig, dtype: str) -> dict:
    rope: dict = {"rope_theta": cfg.rope_theta, "rope_type": "default"}
    if cfg.rope_scaling.type == "llama3":
        s = cfg.rope_scaling
        rope.update(rope_type="llama3", factor=s.factor, low_freq_factor=s.low_freq_factor,
                    high_freq_factor=s.high_freq_factor,
                    original_max_position_embeddings=s.original_max_position)
    out = {
        "architectures": [SUPPORTED[cfg.architecture]],
        "model_type": cfg.architecture,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.resolved_head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_position,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_parameters": rope,
        "tie_word_embeddings": cfg.tie_embeddings,
        "torch_dtype": dtype,
        "dtype": dtype,
    }
    if cfg.architecture == "llama":
        out.update(attention_bias=cfg.qkv_bias, mlp_bias=False)
    elif not cfg.qkv_bias:
        raise CheckpointError("a qwen2 checkpoint always has q/k/v biases; set model.qkv_bias=True")
    return out


# ----------------------------------------------------------------------------- names
_OURS_TO_HF = [
    (re.compile(r"^embed_tokens$"), "model.embed_tokens.weight", False),
    (re.compile(r"^norm\.weight$"), "model.norm.weight", False),
    (re.compile(r"^lm_head$"), "lm_head.weight", True),
    (re.compile(r"^layers\.(\d+)\.(input_layernorm|post_attention_layernorm)\.weight$"),
     "model.layers.{0}.{1}.weight", False),
    (re.compile(r"^layers\.(\d+)\.self_attn\.([qkvo])_proj$"),
     "model.layers.{0}.self_attn.{1}_proj.weight", True),
    (re.compile(r"^layers\.(\d+)\.self_attn\.([qkv])_bias$"),
     "model.layers.{0}.self_attn.{1}_proj.bias", False),
    (re.compile(r"^layers\.(\d+)\.mlp\.(gate|up|down)_proj$"),
     "model.layers.{0}.mlp.{1}_proj.weight", True),
]


def hf_name(ours: str) -> tuple[str, bool]:
    """Our parameter path → (HF tensor name, whether HF stores it transposed)."""
    for pattern, template, transpose in _OURS_TO_HF:
        m = pattern.match(ours)
        if m:
            return template.format(*m.groups()), transpose
    raise CheckpointError(f"no HF name for parameter '{ours}'")


def _param_paths(state) -> list[tuple[str, tuple]]:
    flat = jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda x: isinstance(x, nnx.Variable)
    )[0]
    out = []
    for path, _ in flat:
        out.append((path_name(path), path))
    return out


# ----------------------------------------------------------------------------- load
def _open_checkpoint(path: str) -> dict[str, np.ndarray]:
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        tensors: dict[str, np.ndarray] = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(open_tensors(os.path.join(path, shard)))
        missing = set(weight_map) - set(tensors)
        if missing:
            raise CheckpointError(f"{path}: index lists tensors absent from shards: "
                                  f"{sorted(missing)[:5]}")
        return tensors
    if os.path.exists(single):
        return open_tensors(single)
    raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json")


def load_hf(path: str, dtype: str = "float32", mesh: Mesh | None = None) -> Decoder:
    """Loads an HF Qwen2/Llama checkpoint directory into a Decoder (sharded when ``mesh`` given)."""
    cfg_path = os.path.join(path, "config.json")
    if not os.path.exists(cfg_path):
        raise CheckpointError(f"{path}: no config.json")
    with open(cfg_path) as f:
        cfg = model_config_from_hf(json.load(f), dtype=dtype, path=path)
    return load_hf_into(cfg, path, mesh)


def load_hf_into(cfg: ModelConfig, path: str, mesh: Mesh | None = None) -> Decoder:
    tensors = _open_checkpoint(path)
    abstract = nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    shardings = state_shardings(state, mesh) if mesh is not None else None
    target = jnp.dtype(cfg.param_dtype)
    used = set()

    def load_leaf(path_tuple, var):
        name = path_name(path_tuple)
        key, transpose = hf_name(name)
        if key not in tensors:
            raise CheckpointError(f"{path}: checkpoint is missing tensor '{key}' (for {name})")
        used.add(key)
        src = tensors[key].T if transpose else tensors[key]
        shape = tuple(var.get_value().shape)
        if tuple(src.shape) != shape:
            raise CheckpointError(
                f"{path}: tensor '{key}' has shape {tuple(tensors[key].shape)}, expected "
                f"{shape[::-1] if transpose else shape} from config.json"
            )
        if shardings is None:
            value = jnp.asarray(np.asarray(src), dtype=target)
        else:
            sharding = _lookup(shardings, path_tuple).get_value()
            value = jax.make_array_from_callback(
                shape, sharding, lambda idx, src=src: np.asarray(src[idx]).astype(target)
            )
        return var.replace(value)

    state = jax.tree_util.tree_map_with_path(
        load_leaf, state, is_leaf=lambda x: isinstance(x, nnx.Variable)
    )
    extra = sorted(k for k in tensors if k not in used and not IGNORED_KEYS.match(k))
    if cfg.tie_embeddings:
        extra = [k for k in extra if k != "lm_head.weight"]  # some exporters keep the tied copy
    if extra:
        raise CheckpointError(f"{path}: unexpected tensors not in the model: {extra[:5]}")
    return nnx.merge(graphdef, state)


def _lookup(tree, path_tuple):
    node = tree
    for p in path_tuple:
        key = getattr(p, "key", getattr(p, "idx", None))
        node = node[key]
    return node


# ----------------------------------------------------------------------------- save
def save_hf(model: Decoder, path: str, dtype: str | None = None, tokenizer_dir: str = "") -> None:
    """Writes ``config.json`` + ``model.safetensors`` (+ tokenizer files when given)."""
    cfg = model.cfg
    dtype = check_dtype_name(dtype or cfg.param_dtype)
    np_dtype = np.dtype(jnp.dtype(dtype))
    os.makedirs(path, exist_ok=True)
    state = nnx.state(model, nnx.Param)
    leaves = dict(
        zip(
            [n for n, _ in _param_paths(state)],
            jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable)), strict=False,
        )
    )
    tensors = {}
    for name, var in leaves.items():
        key, transpose = hf_name(name)
        arr = np.asarray(jax.device_get(var.get_value())).astype(np_dtype)
        tensors[key] = np.ascontiguousarray(arr.T if transpose else arr)
    tmp = os.path.join(path, "model.safetensors.tmp")
    save_tensors(tmp, tensors, metadata={"format": "pt"})
    os.replace(tmp, os.path.join(path, "model.safetensors"))  # never leave a half-written file
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(model_config_to_hf(cfg, dtype), f, indent=2)
    if tokenizer_dir:
        import shutil

        for fname in os.listdir(tokenizer_dir):
            if fname.startswith(("tokenizer", "special_tokens", "vocab", "merges", "chat_template")):
                shutil.copy(os.path.join(tokenizer_dir, fname), path)


def config_with_dtype(cfg: ModelConfig, dtype: str) -> ModelConfig:
    return dataclasses.replace(cfg, param_dtype=dtype, dtype=dtype)
