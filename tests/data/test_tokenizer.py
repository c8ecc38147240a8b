import json

import pytest

from toolrl_jax.config.data import DataConfig
from toolrl_jax.data import synthetic
from toolrl_jax.data.prompts import prompt_messages
from toolrl_jax.data.tokenizer import (
    CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    load_tokenizer,
    train_demo_tokenizer,
)
from toolrl_jax.data.trajectories import TAGS

from .conftest import TOOLS


def test_files_are_a_qwen_style_hf_tokenizer_dir(tokenizer_dir):
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    assert config["chat_template"] == CHAT_TEMPLATE
    assert config["eos_token"] == "<|im_end|>" and config["pad_token"] == "<|endoftext|>"
    assert (tokenizer_dir / "tokenizer.json").is_file()


def test_vocab_size_and_tags(tokenizer):
    assert len(tokenizer) == 512
    for tag in (*TAGS, *SPECIAL_TOKENS):
        ids = tokenizer.encode(tag, add_special_tokens=False)
        assert len(ids) == 1, tag
        assert tokenizer.decode(ids) == tag
    # Tool tags are not special: they survive skip_special_tokens, the chat markers do not.
    text = "<|im_start|><calculator>1+2</calculator><|im_end|>"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<calculator>1+2</calculator>"


def test_digits_are_one_token_each(tokenizer):
    ids = tokenizer.encode("What is 437*86? 1000000", add_special_tokens=False)
    pieces = [tokenizer.decode([i]) for i in ids]
    assert [p for p in pieces if p.strip().isdigit()] == list("437" "86" "1000000")
    assert not [t for t in tokenizer.get_vocab() if sum(c.isdigit() for c in t) > 1]


def test_round_trip_prompts_and_trajectories(tokenizer, small_cfg):
    records = synthetic.synthetic_split(small_cfg, "heldout")
    texts = [r["trajectory"] for r in records] + [r["question"] for r in records] + [
        "unicode ✓ ünïcödé 東京 \t tabs\n\nand  double  spaces", "<result>\n{'a': [1, 2]}\n</result>"
    ]
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text
    # Tags inside a trajectory come out as single tokens.
    ids = tokenizer.encode(records[0]["trajectory"], add_special_tokens=False)
    assert tokenizer.convert_tokens_to_ids("<answer>") in ids


def test_chat_template(tokenizer):
    messages = prompt_messages("What is 7+5?", TOOLS)
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True,
                                         tokenize=False)
    assert text == (f"<|im_start|>system\n{messages[0]['content']}<|im_end|>\n"
                    "<|im_start|>user\nWhat is 7+5?<|im_end|>\n<|im_start|>assistant\n")
    no_system = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}],
                                              add_generation_prompt=False, tokenize=False)
    assert no_system == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                         "<|im_start|>user\nhi<|im_end|>\n")
    with pytest.raises(Exception, match="unsupported chat role"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_training_is_deterministic(tmp_path):
    texts = [r["trajectory"] for r in synthetic.synthetic_split(DataConfig(num_heldout=60),
                                                                "heldout")]
    a = train_demo_tokenizer(tmp_path / "a", texts, 400)
    b = train_demo_tokenizer(tmp_path / "b", texts, 400)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    with pytest.raises(ValueError, match="cannot hold"):
        train_demo_tokenizer(tmp_path / "c", texts, 200)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
