"""Our decoder vs transformers' PyTorch model on the same random checkpoint (fp32)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from toolrl_jax.models.hf import CheckpointError, load_hf, save_hf  # noqa: E402
from toolrl_jax.testing.tiny import (  # noqa: E402
    tiny_llama_config,
    tiny_qwen2_config,
    write_transformers_checkpoint,
)

CONFIGS = {"qwen2": tiny_qwen2_config, "llama": tiny_llama_config}


def _batch(vocab, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, size=(3, 40)).astype(np.int32)
    lengths = np.array([40, 23, 31])  # rows of different lengths: right padding must not leak
    mask = (np.arange(40)[None, :] < lengths[:, None]).astype(np.int32)
    return tokens, mask, lengths


def _hf_logits(path, tokens, mask):
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(tokens, dtype=torch.long),
                    attention_mask=torch.tensor(mask, dtype=torch.long))
    return out.logits.numpy()


@pytest.mark.parametrize("scan_layers", [False, True])
@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_logits_match_transformers(tmp_path, arch, scan_layers):
    cfg = CONFIGS[arch]()
    write_transformers_checkpoint(str(tmp_path), cfg, seed=1)
    ours = load_hf(str(tmp_path), scan_layers=scan_layers)
    assert ours.cfg.scan_layers == scan_layers
    assert ours.cfg.tie_embeddings == cfg.tie_embeddings
    assert ours.cfg.rope_scaling == cfg.rope_scaling
    tokens, mask, lengths = _batch(cfg.vocab_size)
    ref = _hf_logits(str(tmp_path), tokens, mask)
    got = np.asarray(ours(tokens, mask))
    for b, n in enumerate(lengths):  # compare real tokens only; padded positions are undefined
        np.testing.assert_allclose(got[b, :n], ref[b, :n], atol=1e-4, rtol=0)
    assert np.abs(ref).max() > 0.1  # not a degenerate all-zero model


@pytest.mark.parametrize("scan_layers", [False, True])
@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_save_hf_loads_in_transformers(tmp_path, arch, scan_layers):
    cfg = CONFIGS[arch]()
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_transformers_checkpoint(str(src), cfg, seed=2)
    ours = load_hf(str(src), scan_layers=scan_layers)
    save_hf(ours, str(dst))
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        str(dst), dtype=torch.float32, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    tokens, mask, lengths = _batch(cfg.vocab_size, seed=3)
    ref = _hf_logits(str(dst), tokens, mask)
    got = np.asarray(ours(tokens, mask))
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(got[b, :n], ref[b, :n], atol=1e-4, rtol=0)


def test_missing_tensor_is_one_clear_error(tmp_path):
    from toolrl_jax.models.safetensors_io import open_tensors, save_tensors

    cfg = tiny_qwen2_config()
    write_transformers_checkpoint(str(tmp_path), cfg)
    path = tmp_path / "model.safetensors"
    tensors = {k: np.array(v) for k, v in open_tensors(str(path)).items()}
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_tensors(str(path), tensors)
    with pytest.raises(CheckpointError) as e:
        load_hf(str(tmp_path))
    msg = str(e.value)
    assert "missing tensor 'model.layers.1.mlp.up_proj.weight'" in msg and "\n" not in msg


def test_unsupported_architecture(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match="model_type 'gpt2' is not supported"):
        load_hf(str(tmp_path))


def test_dtype_object_instead_of_a_name_is_a_clear_error(tmp_path):
    import jax.numpy as jnp

    write_transformers_checkpoint(str(tmp_path), tiny_qwen2_config())
    with pytest.raises(TypeError, match=r"dtype must be a dtype name.*not jnp.float32"):
        load_hf(str(tmp_path), dtype=jnp.float32)
    with pytest.raises(ValueError, match=r"dtype='float16' is not supported"):
        load_hf(str(tmp_path), dtype="float16")
