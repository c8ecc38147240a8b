"""Hugging Face interop: ``config.json`` + safetensors ⇄ our :class:`Decoder`.

``load_hf`` reads straight into (optionally sharded) parameters: each device slice is read from the
memory-mapped file, so a large checkpoint never sits whole in host memory. ``save_hf`` writes a
directory that ``transformers.AutoModelForCausalLM.from_pretrained`` loads with no missing or
unexpected keys, streaming one tensor at a time (multi-process safe: only process 0 writes).

HF names are per layer (``model.layers.{i}.…``) in both directions; with ``model.scan_layers``
our layer params are stacked (``layers.mlp.up_proj`` is ``[L, D, F]``) and slice ``i`` of each
maps to layer i's HF tensor.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from toolrl_jax.config import ModelConfig, RopeScalingConfig
from toolrl_jax.models.decoder import Decoder
from toolrl_jax.models.safetensors_io import open_tensors, write_tensors
from toolrl_jax.sharding import path_name, state_shardings, sync_processes

SUPPORTED = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}
# Buffers some exporters write that carry no parameters.
IGNORED_KEYS = re.compile(r".*rotary_emb\.inv_freq$")


class CheckpointError(ValueError):
    """An HF checkpoint we cannot load: unsupported architecture, missing or extra tensors."""


# ----------------------------------------------------------------------------- config
# float64 is for precision checks (it needs jax_enable_x64: see layers.require_x64).
DTYPE_NAMES = ("float32", "bfloat16", "float64")


def check_dtype_name(dtype, what: str = "dtype") -> str:
    """``dtype`` must be a name (``"float32"`` / ``"bfloat16"`` / ``"float64"``), as in the
    config; a dtype object such as ``jnp.float32`` is refused with a message saying what to pass
    instead."""
    if not isinstance(dtype, str):
        raise TypeError(f"{what} must be a dtype name, one of {list(DTYPE_NAMES)}; got "
                        f"{dtype!r} (pass e.g. dtype='float32', not jnp.float32)")
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"{what}={dtype!r} is not supported; choose one of {list(DTYPE_NAMES)}")
    return dtype


def model_config_from_hf(hf: dict, *, param_dtype: str = "float32", dtype: str | None = None,
                         path: str = "", scan_layers: bool = False,
                         attention: str = "auto") -> ModelConfig:
    """Our config for an HF ``config.json`` dict. ``param_dtype`` is the stored weights' dtype,
    ``dtype`` the compute dtype (None: the same); ``scan_layers`` / ``attention`` are ours only."""
    check_dtype_name(param_dtype, "param_dtype")
    dtype = check_dtype_name(param_dtype if dtype is None else dtype)
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
        param_dtype=param_dtype,
        dtype=dtype,
        scan_layers=scan_layers,
        attention=attention,
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


_STACKED = re.compile(r"^layers\.(?!\d+\.)(.+)$")  # layers.<module path>: no layer index


def hf_names(ours: str, num_layers: int) -> list[tuple[str, bool]] | None:
    """For a stacked (scan_layers) param ``layers.X`` of shape ``[L, …]``: the HF name and
    transpose flag of each slice, ``model.layers.{i}.X…`` for i < L. None for other params."""
    m = _STACKED.match(ours)
    if m is None:
        return None
    return [hf_name(f"layers.{i}.{m.group(1)}") for i in range(num_layers)]


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


def load_hf(path: str, param_dtype: str = "float32", dtype: str | None = None,
            mesh: Mesh | None = None, *, scan_layers: bool = False,
            attention: str = "auto") -> Decoder:
    """Loads an HF Qwen2/Llama checkpoint directory into a Decoder (sharded when ``mesh`` given);
    a ``.gguf`` file path goes to :func:`toolrl_jax.models.gguf.load_gguf` instead.

    ``param_dtype``: the dtype the weights are stored in (fp32 master weights by default);
    ``dtype``: the compute / activation dtype (None: ``param_dtype``), so a bf16-compute model
    with fp32 master weights is ``load_hf(path, "float32", "bfloat16")``. Both are dtype names
    (``"float32"`` / ``"bfloat16"`` / ``"float64"``, which needs ``jax_enable_x64``), as in
    the config. ``scan_layers`` / ``attention`` are the run's ``model.scan_layers`` /
    ``model.attention`` (config.json knows nothing of them).
    """
    if os.fspath(path).endswith(".gguf"):  # llama.cpp's format: own metadata, names, quantization
        from toolrl_jax.models.gguf import load_gguf

        return load_gguf(path, param_dtype, dtype, mesh, scan_layers=scan_layers,
                         attention=attention)
    cfg_path = os.path.join(path, "config.json")
    if not os.path.exists(cfg_path):
        raise CheckpointError(f"{path}: no config.json")
    with open(cfg_path) as f:
        cfg = model_config_from_hf(json.load(f), param_dtype=param_dtype, dtype=dtype, path=path,
                                   scan_layers=scan_layers, attention=attention)
    return load_hf_into(cfg, path, mesh)


def load_hf_into(cfg: ModelConfig, path: str, mesh: Mesh | None = None) -> Decoder:
    """The checkpoint at ``path`` as a Decoder of config ``cfg``; with ``mesh`` every leaf is
    built directly in its sharding from the memory-mapped file (``make_array_from_callback``
    reads only the slices this process's devices hold; for a stacked leaf, those slices of each
    layer's tensor)."""
    return load_tensors_into(cfg, _open_checkpoint(path), path, mesh)


def load_tensors_into(cfg: ModelConfig, tensors: Mapping[str, np.ndarray], path: str,
                      mesh: Mesh | None = None) -> Decoder:
    """A Decoder of config ``cfg`` from ``tensors``: HF tensor name → array-like in HF's
    orientation (safetensors memmaps, or the GGUF import's lazily dequantized tensors). Every
    tensor is read once and every model tensor must be there; ``path`` names the source in
    errors."""
    abstract = nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    shardings = state_shardings(state, mesh) if mesh is not None else None
    target = jnp.dtype(cfg.param_dtype)
    used = set()

    def source(key: str, transpose: bool, name: str, shape: tuple[int, ...]):
        """HF tensor ``key`` as our orientation (a lazy memmap view), shape-checked."""
        if key not in tensors:
            raise CheckpointError(f"{path}: checkpoint is missing tensor '{key}' (for {name})")
        used.add(key)
        src = tensors[key].T if transpose else tensors[key]
        if tuple(src.shape) != shape:
            raise CheckpointError(
                f"{path}: tensor '{key}' has shape {tuple(tensors[key].shape)}, expected "
                f"{shape[::-1] if transpose else shape} from the model config"
            )
        return src

    def load_leaf(path_tuple, var):
        name = path_name(path_tuple)
        shape = tuple(var.get_value().shape)
        per_layer = hf_names(name, cfg.num_layers)
        if per_layer is None:
            src = source(*hf_name(name), name, shape)

            def read(idx, src=src):
                return np.asarray(src[idx]).astype(target)
        else:  # stacked [L, …]: slice i of the leaf is layer i's HF tensor
            srcs = [source(key, transpose, name, shape[1:]) for key, transpose in per_layer]

            def read(idx, srcs=srcs):
                layers = range(len(srcs))[idx[0]]
                return np.stack([np.asarray(srcs[i][idx[1:]]).astype(target) for i in layers])
        if shardings is None:
            value = jnp.asarray(read(tuple(slice(None) for _ in shape)))
        else:
            sharding = _lookup(shardings, path_tuple).get_value()
            value = jax.make_array_from_callback(shape, sharding, read)
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
def _replicated_fetchers():
    """``fetch(value, layer) -> jax.Array`` fully replicated over ``value``'s mesh: the whole
    param (``layer=None``) or its slice ``[layer]``.

    A jitted identity (or slice) with ``out_shardings = P()`` is what makes export multi-process
    safe: every process runs the same all-gather, after which process 0 holds the whole tensor
    on its own devices. Only one tensor (one layer's slice of a stacked param) is replicated at
    a time, so the export needs one tensor of headroom per device, not a second copy of the
    model. The layer index is an array argument, so a stacked leaf compiles once, not L times.
    """
    jitted: dict = {}

    def fetch(value, layer: int | None):
        sharding = value.sharding
        if not isinstance(sharding, NamedSharding):  # one device: nothing to gather
            return value if layer is None else value[layer]
        replicated = NamedSharding(sharding.mesh, PartitionSpec())
        key = (replicated, layer is None)
        if key not in jitted:
            if layer is None:
                jitted[key] = jax.jit(lambda x: x, out_shardings=replicated)
            else:
                jitted[key] = jax.jit(lambda x, i: jax.lax.dynamic_index_in_dim(x, i, 0, False),
                                      out_shardings=replicated)
        if layer is None:
            return jitted[key](value)
        # Every process passes the same index, as a global (replicated) array.
        index = jax.make_array_from_callback((), replicated, lambda _: np.int32(layer))
        return jitted[key](value, index)

    return fetch


def save_hf(model: Decoder, path: str, dtype: str | None = None, tokenizer_dir: str = "") -> None:
    """Writes ``config.json`` + ``model.safetensors`` (+ tokenizer files when given:
    ``tokenizer_dir`` is an HF tokenizer dir, or a ``.gguf`` file whose tokenizer is saved).

    Every process must call it (the gathers are collectives); only process 0 writes, one tensor
    at a time: the safetensors header is written from the params' shapes first, then each tensor
    is gathered (replicated), converted on the host and appended. Other processes write nothing
    and return once process 0 has finished, so the export exists when any of them returns.
    """
    cfg = model.cfg
    dtype = check_dtype_name(dtype or cfg.param_dtype)
    np_dtype = np.dtype(jnp.dtype(dtype))
    lead = jax.process_index() == 0
    hf_config = model_config_to_hf(cfg, dtype)  # on every process: a refusal raises everywhere
    state = nnx.state(model, nnx.Param)
    leaves = dict(
        zip(
            [n for n, _ in _param_paths(state)],
            jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable)), strict=False,
        )
    )
    # HF key -> (our leaf value, layer slice or None, transpose); shapes as HF stores them.
    plan: dict[str, tuple[jax.Array, int | None, bool]] = {}
    specs: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
    for name, var in leaves.items():
        value = var.get_value()
        per_layer = hf_names(name, cfg.num_layers)
        entries = ([(*hf_name(name), None)] if per_layer is None
                   else [(key, transpose, i) for i, (key, transpose) in enumerate(per_layer)])
        for key, transpose, layer in entries:
            shape = tuple(value.shape[1:] if layer is not None else value.shape)
            plan[key] = (value, layer, transpose)
            specs[key] = (np_dtype, shape[::-1] if transpose else shape)
    fetch = _replicated_fetchers()

    def produce(key: str) -> np.ndarray:
        value, layer, transpose = plan[key]
        whole = fetch(value, layer)
        if not lead:
            return None
        arr = np.asarray(whole.addressable_data(0)).astype(np_dtype)
        return np.ascontiguousarray(arr.T if transpose else arr)

    if lead:
        os.makedirs(path, exist_ok=True)
        tmp = os.path.join(path, "model.safetensors.tmp")
        write_tensors(tmp, specs, produce, metadata={"format": "pt"})
        os.replace(tmp, os.path.join(path, "model.safetensors"))  # never a half-written file
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(hf_config, f, indent=2)
        if tokenizer_dir.endswith(".gguf"):  # a GGUF-born policy: its tokenizer as HF files
            from toolrl_jax.models.gguf import load_gguf_tokenizer

            load_gguf_tokenizer(tokenizer_dir).save_pretrained(path)
        elif tokenizer_dir:
            import shutil

            for fname in os.listdir(tokenizer_dir):
                if fname.startswith(("tokenizer", "special_tokens", "vocab", "merges",
                                     "chat_template")):
                    shutil.copy(os.path.join(tokenizer_dir, fname), path)
    else:
        for key in sorted(specs):  # the same gathers, in the same order, as process 0's writer
            produce(key)
    sync_processes(f"save_hf:{path}")


def config_with_dtype(cfg: ModelConfig, dtype: str) -> ModelConfig:
    return dataclasses.replace(cfg, param_dtype=dtype, dtype=dtype)
