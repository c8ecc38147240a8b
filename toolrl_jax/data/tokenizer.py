"""The demo tokenizer: a small byte-level BPE saved and loaded as a Hugging Face tokenizer dir.

It goes through ``transformers.AutoTokenizer.from_pretrained`` — the code path a real Qwen or
Llama tokenizer takes — so nothing downstream special-cases the demo. Choices, and why:

* byte-level BPE: any text round-trips exactly (tool output can contain anything);
* digits are split one per token before BPE (``pre_tokenizers.Digits``), so ``437`` is always
  ``4 3 7`` and column arithmetic is learnable, as in Qwen2/Llama-3;
* ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>`` are *special* (chat structure, end of turn);
  the tool / answer / think tags are *added, non-special* tokens: single ids that decode to
  themselves even with ``skip_special_tokens=True``, so text-level call parsers see them;
* a Qwen-style ChatML ``chat_template`` (system / user / assistant) in ``tokenizer_config.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from toolrl_jax.data.prompts import system_prompt
from toolrl_jax.data.trajectories import TAGS, short_completion

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)
DEFAULT_SYSTEM = "You are a helpful assistant."

# Qwen2.5's ChatML layout without its tool-schema branch: a default system turn when the
# conversation has none, one <|im_start|>role\n…<|im_end|>\n block per message.
CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{- raise_exception('unsupported chat role: ' + message['role']) }}"
    "{%- endif %}"
    "{%- if not (loop.first and message['role'] == 'system') %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def train_demo_tokenizer(out_dir: str | Path, texts: Iterable[str], vocab_size: int) -> Path:
    """Trains the demo BPE on ``texts`` and writes ``tokenizer.json`` + ``tokenizer_config.json``.

    ``vocab_size`` counts every token, the added tags included (the BPE may stop short of it on a
    small corpus). Returns ``out_dir``.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    num_added = len(SPECIAL_TOKENS) + len(TAGS)
    if vocab_size < 256 + num_added:
        raise ValueError(f"vocab_size={vocab_size} cannot hold 256 bytes + {num_added} tags")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TAGS),  # the specials are counted inside the trainer's size
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": IM_END,  # end of an assistant turn, as in Qwen2.5-Instruct
        "pad_token": ENDOFTEXT,
        "unk_token": None,
        "additional_special_tokens": [IM_START, IM_END],
        "clean_up_tokenization_spaces": False,  # would eat spaces around digits and punctuation
        "model_max_length": 32768,
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", "utf-8")
    return out


def load_tokenizer(path: str | Path) -> Any:
    """Loads any HF tokenizer dir (the demo's or a real model's) through AutoTokenizer, or the
    tokenizer stored in a ``.gguf`` file's metadata (vocab, merges, specials, chat template)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: GGUF file not found")
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    elif (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    else:
        raise FileNotFoundError(f"{path}: no tokenizer.json / tokenizer_config.json here")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{path}: tokenizer has no chat_template; prompts need one")
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{path}: tokenizer has no eos_token; SFT targets end with it")
    return tokenizer


def tokenizer_texts(
    records: Iterable[Mapping[str, Any]], tools: Sequence[str], extra: Iterable[str] = ()
) -> Iterable[str]:
    """The text the demo tokenizer should compress well: prompts and both completion modes."""
    yield system_prompt(tools)
    for record in records:
        yield record["question"]
        yield short_completion(record["answer"])
        if record["trajectory"]:
            yield record["trajectory"]
    yield from extra
