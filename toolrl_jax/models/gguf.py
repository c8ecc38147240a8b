"""GGUF import: a llama.cpp ``.gguf`` file → our model config, params and tokenizer.

``model.init_from`` (and ``load_hf``) accept a ``.gguf`` path wherever they accept an HF
directory; ``data.tokenizer`` accepts it too (``data/tokenizer.py:load_tokenizer``). The file is
read with the ``gguf`` package (llama.cpp's own reader), memory-mapped:

* **config**: the ``<arch>.*`` metadata (``block_count``, ``embedding_length``, ...) becomes an
  HF ``config.json``-style dict and goes through :func:`model_config_from_hf`, so a GGUF and
  an HF directory of the same model give the same :class:`ModelConfig`; no ``output.weight``
  tensor means tied embeddings (llama.cpp omits the copy).
* **tensors**: GGUF names (``blk.3.attn_q.weight``) map to HF names
  (``model.layers.3.self_attn.q_proj.weight``) and :func:`load_tensors_into` builds the params
  (sharded when a mesh is given). Each tensor is dequantized to fp32 when its leaf is built, not
  up front, so the whole fp32 model never sits on the host beside the params.
* **Q/K row order**: llama.cpp's converter permutes the rows of Llama's q/k projections so its
  RoPE can rotate adjacent pairs; HF (and we) rotate the two halves of each head. The permutation
  is undone here (Qwen2 files are not permuted).
* **tokenizer**: transformers builds a fast tokenizer (vocab, merges, specials, chat template)
  from the ``tokenizer.*`` metadata.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from jax.sharding import Mesh

from toolrl_jax.config import ModelConfig
from toolrl_jax.models.decoder import Decoder
from toolrl_jax.models.hf import CheckpointError, load_tensors_into, model_config_from_hf

GGUF_SUFFIX = ".gguf"
# llama.cpp architectures whose tensors are our Decoder's (the HF model_type of the same name).
SUPPORTED_ARCHITECTURES = ("llama", "qwen2")
# Architectures whose converter permutes q/k rows (llama.cpp convert_hf_to_gguf.py LlamaModel).
_PERMUTED_QK = ("llama",)

_TOP_LEVEL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_TENSOR = re.compile(r"^blk\.(\d+)\.(\w+)\.(weight|bias)$")
_LAYER_MODULES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def is_gguf(path: str | os.PathLike) -> bool:
    return str(path).endswith(GGUF_SUFFIX)


def _reader(path: str):
    import gguf  # the runtime dependency only GGUF users exercise

    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: GGUF file not found")
    try:
        return gguf.GGUFReader(path)
    except (ValueError, OSError) as e:  # bad magic, truncated file, unknown value type
        raise CheckpointError(f"{path}: not a readable GGUF file: {e}") from e


# ----------------------------------------------------------------------------- names
def hf_tensor_name(gguf_name: str, path: str = "") -> str:
    """GGUF tensor name → HF name; a tensor our decoder has no place for is an error."""
    if gguf_name in _TOP_LEVEL:
        return _TOP_LEVEL[gguf_name]
    m = _LAYER_TENSOR.match(gguf_name)
    if m and m.group(2) in _LAYER_MODULES:
        layer, module, kind = m.groups()
        if kind == "bias" and module not in ("attn_q", "attn_k", "attn_v"):
            raise CheckpointError(f"{path}: tensor '{gguf_name}': only q/k/v projections may "
                                  "have biases in a llama/qwen2 decoder")
        return f"model.layers.{layer}.{_LAYER_MODULES[module]}.{kind}"
    if gguf_name == "rope_freqs.weight":
        raise CheckpointError(f"{path}: tensor 'rope_freqs.weight' (llama3-style RoPE scaling "
                              "stored as frequency factors) is not supported")
    raise CheckpointError(f"{path}: tensor '{gguf_name}' has no counterpart in a llama/qwen2 "
                          "decoder")


# ----------------------------------------------------------------------------- config
_REQUIRED = object()


def _field(reader, key: str, default: Any = _REQUIRED, path: str = "") -> Any:
    field = reader.fields.get(key)
    if field is None:
        if default is _REQUIRED:
            raise CheckpointError(f"{path}: GGUF metadata has no '{key}'")
        return default
    return field.contents()


def hf_config_from_gguf(reader, path: str = "") -> dict:
    """The GGUF metadata as an HF ``config.json`` dict (what transformers' GGUF import builds)."""
    arch = _field(reader, "general.architecture", path=path)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise CheckpointError(f"{path}: GGUF architecture '{arch}' is not supported "
                              f"(supported: {list(SUPPORTED_ARCHITECTURES)})")
    get = lambda key, default=_REQUIRED: _field(reader, f"{arch}.{key}", default, path)
    heads, hidden = int(get("attention.head_count")), int(get("embedding_length"))
    head_dim = int(get("attention.key_length", hidden // heads))
    if int(get("rope.dimension_count", head_dim)) != head_dim:
        raise CheckpointError(f"{path}: partial rotary embeddings (rope.dimension_count "
                              f"{get('rope.dimension_count')} != head dim {head_dim}) are not "
                              "supported")
    scaling = get("rope.scaling.type", "none")
    if scaling != "none":
        raise CheckpointError(f"{path}: RoPE scaling '{scaling}' is not supported")
    names = {t.name for t in reader.tensors}
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = get("vocab_size", len(tokens.data) if tokens is not None else None)
    if vocab is None:  # neither key: the embedding's row count is the vocabulary
        vocab = int(next(t.shape[-1] for t in reader.tensors if t.name == "token_embd.weight"))
    return {
        "model_type": arch,
        "vocab_size": int(vocab),
        "hidden_size": hidden,
        "intermediate_size": int(get("feed_forward_length")),
        "num_hidden_layers": int(get("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(get("attention.head_count_kv", heads)),
        "head_dim": head_dim,
        "rope_theta": float(get("rope.freq_base", 10000.0)),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
        "max_position_embeddings": int(get("context_length")),
        "tie_word_embeddings": "output.weight" not in names,
        "attention_bias": "blk.0.attn_q.bias" in names,
    }


def model_config_from_gguf(path: str, *, param_dtype: str = "float32", dtype: str | None = None,
                           scan_layers: bool = False, attention: str = "auto") -> ModelConfig:
    """Our :class:`ModelConfig` for a GGUF file (dtypes and kernels as in ``load_hf``)."""
    return model_config_from_hf(hf_config_from_gguf(_reader(path), path), param_dtype=param_dtype,
                                dtype=dtype, path=path, scan_layers=scan_layers,
                                attention=attention)


# ----------------------------------------------------------------------------- tensors
def unpermute_qk(rows: np.ndarray, heads: int) -> np.ndarray:
    """Undoes llama.cpp's q/k permutation of a ``[heads * head_dim, …]`` weight or bias.

    The converter reorders each head's rows from (half, i) to (i, half) — rows (i, i + hd/2)
    become adjacent — so ``reshape(heads, hd/2, 2)`` + swap back to ``(heads, 2, hd/2)``
    restores HF's rotate-half layout.
    """
    half = rows.shape[0] // heads // 2
    split = rows.reshape(heads, half, 2, *rows.shape[1:])
    return split.swapaxes(1, 2).reshape(rows.shape)


def dequantize(tensor, path: str = "") -> np.ndarray:
    """One GGUF tensor as fp32 in HF's orientation (``[out, in]`` for a weight)."""
    from gguf import GGMLQuantizationType, quants

    try:
        qtype = GGMLQuantizationType(tensor.tensor_type)
        values = quants.dequantize(tensor.data, qtype)
    except (NotImplementedError, ValueError) as e:
        name = getattr(tensor.tensor_type, "name", str(tensor.tensor_type))
        raise CheckpointError(f"{path}: tensor '{tensor.name}' has GGML type {name}, which this "
                              f"import cannot dequantize ({type(e).__name__}: {e})") from e
    shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists dims fastest first
    if values.size != int(np.prod(shape)):
        raise CheckpointError(f"{path}: tensor '{tensor.name}' dequantized to {values.size} "
                              f"values, its shape {shape} holds {int(np.prod(shape))}")
    return values.reshape(shape).astype(np.float32, copy=False)


class GGUFTensors(Mapping):
    """HF tensor name → fp32 array, dequantized (and un-permuted) on each lookup.

    The mapping ``load_tensors_into`` reads: it asks for each tensor once, when that leaf is
    built, so at most one leaf's source tensors are held in fp32 at a time.
    """

    def __init__(self, reader, hf_config: dict, path: str):
        self._path = path
        self._by_name = {hf_tensor_name(t.name, path): t for t in reader.tensors}
        permuted = hf_config["model_type"] in _PERMUTED_QK
        heads = hf_config["num_attention_heads"]
        kv_heads = hf_config["num_key_value_heads"]
        # q rows are permuted per query head, k rows per key/value head.
        self._heads = {"q_proj": heads, "k_proj": kv_heads} if permuted else {}

    def __getitem__(self, name: str) -> np.ndarray:
        values = dequantize(self._by_name[name], self._path)
        module = name.split(".")[-2]
        if module in self._heads:
            values = unpermute_qk(values, self._heads[module])
        return values

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


def load_gguf(path: str, param_dtype: str = "float32", dtype: str | None = None,
              mesh: Mesh | None = None, *, scan_layers: bool = False,
              attention: str = "auto") -> Decoder:
    """A GGUF file as a Decoder, with ``load_hf``'s arguments (weights dequantized to fp32, as
    GGUF defines them and as transformers' import does, then stored in ``param_dtype``: the cast
    to float64 is exact, so a float64 model holds exactly the fp32-dequantized values)."""
    reader = _reader(path)
    hf_config = hf_config_from_gguf(reader, path)
    cfg = model_config_from_hf(hf_config, param_dtype=param_dtype, dtype=dtype, path=path,
                               scan_layers=scan_layers, attention=attention)
    return load_tensors_into(cfg, GGUFTensors(reader, hf_config, path), path, mesh)


# ----------------------------------------------------------------------------- tokenizer
def load_gguf_tokenizer(path: str):
    """The file's tokenizer (vocab, merges, special tokens, chat template) via transformers."""
    from transformers import AutoTokenizer

    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: GGUF file not found")
    return AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(path)),
                                         gguf_file=os.path.basename(path))
