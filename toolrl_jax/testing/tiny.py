"""Tiny model configs and throwaway HF checkpoints / tokenizers for tests (never used in production).

``write_transformers_checkpoint`` builds the checkpoint with ``transformers`` itself (PyTorch, a
``dev`` extra), so parity tests compare against an independent implementation, not our own writer.
"""

from __future__ import annotations

import json
import os

from toolrl_jax.config import ModelConfig, RopeScalingConfig


def tiny_qwen2_config(**overrides) -> ModelConfig:
    """Qwen2-style: q/k/v bias, untied head, GQA 2:1."""
    base = dict(architecture="qwen2", vocab_size=128, hidden_size=64, intermediate_size=96,
                num_layers=2, num_heads=4, num_kv_heads=2, qkv_bias=True, tie_embeddings=False,
                rope_theta=10000.0, max_position=256)
    base.update(overrides)
    return ModelConfig(**base)


def tiny_llama_config(**overrides) -> ModelConfig:
    """Llama-3-style: tied embeddings, Llama-3 RoPE scaling, GQA 4:1, no biases."""
    base = dict(architecture="llama", vocab_size=128, hidden_size=64, intermediate_size=96,
                num_layers=2, num_heads=8, num_kv_heads=2, qkv_bias=False, tie_embeddings=True,
                rope_theta=500000.0, max_position=256,
                rope_scaling=RopeScalingConfig(type="llama3", factor=8.0, low_freq_factor=1.0,
                                               high_freq_factor=4.0, original_max_position=32))
    base.update(overrides)
    return ModelConfig(**base)


def write_transformers_checkpoint(path: str, cfg: ModelConfig, seed: int = 0) -> None:
    """Random-init the HF PyTorch model for ``cfg`` and ``save_pretrained`` it to ``path``."""
    import torch
    import transformers

    from toolrl_jax.models.hf import model_config_to_hf

    hf = model_config_to_hf(cfg, "float32")
    hf.pop("architectures")
    hf.pop("torch_dtype")
    hf.pop("dtype")
    model_type = hf.pop("model_type")
    config_cls = {"qwen2": transformers.Qwen2Config, "llama": transformers.LlamaConfig}[model_type]
    hf_cfg = config_cls(**hf)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(hf_cfg)
    with torch.no_grad():  # non-trivial norms and biases so a wrong mapping shows up
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    model.save_pretrained(path)


def write_tiny_tokenizer(path: str, vocab_size: int = 128) -> None:
    """A byte-level BPE trained on a few lines, saved as an HF tokenizer dir with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = ["What is 12 * 7? <python>print(12*7)</python> <result>84</result> <answer>84</answer>"]
    tok.train_from_iterator(text * 10, trainer)
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>",
                   "pad_token": "<|endoftext|>", "chat_template": template}, f)
