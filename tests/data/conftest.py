"""Shared fixtures for the data tests: a small config and one demo tokenizer per session."""

from __future__ import annotations

import pytest

from toolrl_jax.config.data import DataConfig
from toolrl_jax.data import synthetic
from toolrl_jax.data.tokenizer import load_tokenizer, tokenizer_texts, train_demo_tokenizer

TOOLS = ("calculator", "python", "search")


@pytest.fixture(scope="session")
def small_cfg() -> DataConfig:
    return DataConfig(num_train=120, num_heldout=40, num_rare=60)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, small_cfg):
    records = synthetic.synthetic_split(small_cfg, "train")
    passages = [p["text"] for p in synthetic.world_from_config(small_cfg).passages()]
    out = tmp_path_factory.mktemp("tokenizer")
    return train_demo_tokenizer(out, tokenizer_texts(records, TOOLS, passages), vocab_size=512)


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)
