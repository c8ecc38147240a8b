"""One-call set-up of a run's data: the built dataset, the tokenizer, the search corpus.

Everything is written under directories the caller passes (the run's work dir), and each step is
idempotent: a second call — a resumed run, another host — reuses what is there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolrl_jax.config.data import DataConfig
from toolrl_jax.data.builders import TaskSource, prepare_builder
from toolrl_jax.data.fc_warmup import fc_tokenizer_texts
from toolrl_jax.data.prompts import FunctionsPrompt
from toolrl_jax.data.splits import TRAIN
from toolrl_jax.data.synthetic import world_from_config, write_corpus
from toolrl_jax.data.tokenizer import load_tokenizer, tokenizer_texts, train_demo_tokenizer

CORPUS_FILENAME = "corpus.jsonl"


def prepare_dataset(cfg: DataConfig, workdir: str | Path) -> Any:
    """Builds (or reuses) ``cfg.source`` as array_record under ``cfg.data_dir`` or
    ``<workdir>/tfds``; returns the prepared TFDS builder for the loaders."""
    data_dir = Path(cfg.data_dir) if cfg.data_dir else Path(workdir) / "tfds"
    return prepare_builder(cfg, data_dir)


def prepare_tokenizer(cfg: DataConfig, workdir: str | Path, builder: Any,
                      tools: Sequence[str], describe_functions: FunctionsPrompt | None = None,
                      answer_style: str = "tag") -> Any:
    """``cfg.tokenizer`` if set; else the demo BPE in ``<workdir>/tokenizer``, trained on the
    train split (prompts, both completion modes) and, for lookup, the corpus — once.
    Function-calling items add their prompts' function descriptions (``describe_functions``,
    the call syntax's) and warm-up targets: words the tokenizer never saw cost a token per
    character, and those prompts list every function's JSON spec."""
    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer)
    out = Path(workdir) / "tokenizer"
    if not (out / "tokenizer.json").is_file():
        extra = []
        if cfg.source == "synthetic" and "lookup" in cfg.tasks:
            extra = [p["text"] for p in world_from_config(cfg).passages()]
        records = TaskSource(builder, TRAIN).records()
        extra += fc_tokenizer_texts(records, describe_functions, answer_style)
        train_demo_tokenizer(out, tokenizer_texts(records, tools, extra), cfg.demo_vocab_size)
    return load_tokenizer(out)


def prepare_corpus(cfg: DataConfig, workdir: str | Path) -> Path | None:
    """The lookup corpus JSONL for the search tool (``<workdir>/corpus.jsonl``), or None when the
    run has no lookup task."""
    if cfg.source != "synthetic" or "lookup" not in cfg.tasks:
        return None
    path = Path(workdir) / CORPUS_FILENAME
    return path if path.is_file() else write_corpus(cfg, path)
