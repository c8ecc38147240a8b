"""grain loaders over task records: RL prompts, SFT examples, held-out evaluation.

Each loader is a ``grain.DataLoader`` with an ``IndexSampler`` (global shuffle by seed, sharding
by process) and no worker processes by default. Iterate it with ``it = iter(loader)``; the
iterator is checkpointable: ``state = it.get_state()`` (bytes) and, in a fresh iterator of an
identically built loader, ``it.set_state(state)`` resumes with exactly the next batch (grain also
ships orbax handlers for this state: ``grain.checkpoint.CheckpointSave/CheckpointRestore``).

Batches are Python lists of per-example dicts with unpadded arrays: padding to static shapes is
``buckets.py``'s job. This module does not use JAX (though ``import grain`` loads it); the
caller passes ``shard_index=jax.process_index()``, ``shard_count=jax.process_count()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grain

from toolrl_jax.config.data import DataConfig
from toolrl_jax.data.builders import TaskSource
from toolrl_jax.data.fc_warmup import fc_sft_example
from toolrl_jax.data.function_calling import is_function_calling
from toolrl_jax.data.labels import ItemLabel, LabelledSource, read_labels
from toolrl_jax.data.prompts import (
    FunctionsPrompt,
    function_prompt_messages,
    prompt_messages,
    template_renders_tools,
    template_tools,
)
from toolrl_jax.data.sft import encode_prompt, encode_sft_example, make_sft_example
from toolrl_jax.data.splits import HELDOUT, TRAIN, rl_only, stage_key
from toolrl_jax.data.subsets import IndexSubset, check_stage
from toolrl_jax.data.trajectories import ResultRenderer, choose_mode


class AddPrompt(grain.transforms.Map):
    """Adds ``messages`` (chat prompt) and, with a tokenizer, ``prompt_ids`` (int32 [P]).

    A function-calling record (its own ``metadata["tools"]``) also gets ``functions`` (the names
    whose call is its answer): a template that reads ``tools`` renders them, else
    ``describe_functions`` (the call syntax's description, e.g.
    ``HermesSyntax.describe_functions``) writes them into the system message. ``mode_tag``: the
    system message asks for AutoTool's mode tag, as the SFT data had it (``sft.mode_tag``)."""

    def __init__(self, tools: Sequence[str], tokenizer: Any = None,
                 describe_functions: FunctionsPrompt | None = None, answer_style: str = "tag",
                 mode_tag: bool = False):
        self._tools, self._tokenizer = tuple(tools), tokenizer
        self._describe, self._answer_style = describe_functions, answer_style
        self._mode_tag = mode_tag

    def map(self, record: dict[str, Any]) -> dict[str, Any]:
        if is_function_calling(record):
            return self._map_functions(record)
        messages = prompt_messages(record["question"], self._tools, self._mode_tag)
        out = {**record, "messages": messages}
        if self._tokenizer is not None:
            out["prompt_ids"] = encode_prompt(self._tokenizer, messages)
        return out

    def _map_functions(self, record: dict[str, Any]) -> dict[str, Any]:
        functions = record["metadata"]["tools"]
        in_template = self._tokenizer is not None and template_renders_tools(self._tokenizer)
        if not in_template and self._describe is None:
            raise ValueError(f"record {record['id']!r} brings its own functions: pass "
                             "describe_functions (the call syntax's) or use a tokenizer whose "
                             "chat template renders tools")
        messages = function_prompt_messages(record, describe=None if in_template else self._describe,
                                            answer_style=self._answer_style,
                                            mode_tag=self._mode_tag)
        out = {**record, "messages": messages, "functions": [f["name"] for f in functions]}
        if self._tokenizer is not None:
            out["prompt_ids"] = encode_prompt(self._tokenizer, messages,
                                              template_tools(functions) if in_template else None)
        return out


class EncodeSFT(grain.transforms.Map):
    """Record -> labelled (short/long) SFT example -> tokens, loss mask (see :mod:`.sft`).

    ``labels`` (``data.sft_policy="labels"``): each item's mode is its label's (the model's own
    no-think pass@k, :mod:`.labels`). Function-calling items get their targets from
    :mod:`.fc_warmup`, prompted as :class:`AddPrompt` prompts them (``describe_functions`` /
    ``answer_style``, or the chat template's tools)."""

    def __init__(self, cfg: DataConfig, tokenizer: Any, tools: Sequence[str],
                 render_result: ResultRenderer | None = None, mode_tag: bool = False,
                 describe_functions: FunctionsPrompt | None = None, answer_style: str = "tag",
                 labels: dict[str, ItemLabel] | None = None):
        self._cfg, self._tokenizer, self._tools = cfg, tokenizer, tuple(tools)
        self._render, self._mode_tag = render_result, mode_tag
        self._describe, self._answer_style, self._labels = describe_functions, answer_style, labels

    def _example(self, record: dict[str, Any]):
        policy = self._cfg.sft_policy
        if policy == "labels":
            label = (self._labels or {}).get(record["id"])
            if label is None:
                raise ValueError(f"no label in {self._cfg.labels_path!r}")
            policy = "always_short" if label.mode == "short" else "always_long"
        if not is_function_calling(record):
            return make_sft_example(record, policy=policy, p_long=self._cfg.sft_p_long,
                                    seed=self._cfg.seed, tools=self._tools,
                                    render_result=self._render, mode_tag=self._mode_tag)
        mode = choose_mode(policy, item_id=record["id"], difficulty=record["difficulty"],
                           p_long=self._cfg.sft_p_long, seed=self._cfg.seed)
        in_template = self._tokenizer is not None and template_renders_tools(self._tokenizer)
        functions = record["metadata"]["tools"]
        return fc_sft_example(record, mode, describe_functions=None if in_template else self._describe,
                              template_tools=template_tools(functions) if in_template else (),
                              answer_style=self._answer_style, mode_tag=self._mode_tag)

    def map(self, record: dict[str, Any]) -> dict[str, Any]:
        try:
            example = self._example(record)
        except ValueError as e:
            raise ValueError(f"SFT example {record['id']!r}: {e}") from e
        encoded = encode_sft_example(self._tokenizer, example)
        encoded["task"], encoded["difficulty"] = record["task"], record["difficulty"]
        return encoded


class MaxLength(grain.transforms.Filter):
    """Drops encoded examples longer than ``max_len``: a truncated target would teach the model
    to stop before its answer. An endless loader whose every example is too long would spin
    forever looking for a batch, so a long run of drops raises instead."""

    def __init__(self, max_len: int, max_consecutive_drops: int = 1000):
        self._max_len, self._max_drops, self._drops = max_len, max_consecutive_drops, 0

    def filter(self, example: dict[str, Any]) -> bool:
        if len(example["tokens"]) <= self._max_len:
            self._drops = 0
            return True
        self._drops += 1
        if self._drops >= self._max_drops:
            raise ValueError(f"{self._drops} SFT examples in a row are longer than "
                             f"data.sft_max_len={self._max_len} tokens (last: "
                             f"{example['id']!r}, {len(example['tokens'])} tokens); raise it")
        return False


class StageSubset(IndexSubset):
    """The train records one stage reads when ``DataConfig.rl_only_fraction`` keeps a share of
    them for RL (a grain ``RandomAccessDataSource``): stage ``"rl"`` reads exactly that share,
    ``"sft"`` the rest, so RL prompts are questions the warm-up never answered. Records are
    assigned by a hash of their :func:`~toolrl_jax.data.splits.stage_key` (subject, else
    question; :func:`~toolrl_jax.data.splits.rl_only`); the ``repr`` names the inner source,
    stage and share, so a saved iterator state refuses another split."""

    def __init__(self, source: Any, stage: str, fraction: float, split_seed: int):
        check_stage(stage)
        index = [i for i in range(len(source))
                 if rl_only(stage_key(source[i]), split_seed, fraction) == (stage == "rl")]
        if not index:
            raise ValueError(f"data.rl_only_fraction={fraction} leaves no train record of "
                             f"{source!r} for {stage}: use a share strictly between 0 and 1 "
                             "and more train items")
        super().__init__(source, index, f"stage={stage}, rl_only_fraction={fraction}, "
                                        f"records={len(index)}")


def make_loader(
    source: Any,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool,
    num_epochs: int | None,
    operations: Sequence[Any] = (),
    shard_index: int = 0,
    shard_count: int = 1,
    worker_count: int = 0,
    drop_remainder: bool = True,
) -> grain.DataLoader:
    """A checkpointable loader over any random-access ``source``; batches are lists of dicts.

    ``num_epochs=None`` repeats forever. With ``shard_count > 1`` each process reads a disjoint
    1/shard_count of the records (the remainder is dropped so shards stay equal).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size={batch_size} must be > 0")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index={shard_index} must be in [0, shard_count={shard_count})")
    if len(source) < shard_count:
        raise ValueError(f"{source!r} has fewer records than shards ({shard_count})")
    sampler = grain.samplers.IndexSampler(
        num_records=len(source),
        shard_options=grain.sharding.ShardOptions(shard_index, shard_count, drop_remainder=True),
        shuffle=shuffle,
        num_epochs=num_epochs,
        seed=seed,
    )
    batch = grain.transforms.Batch(batch_size, drop_remainder=drop_remainder, batch_fn=list)
    return grain.DataLoader(data_source=source, sampler=sampler,
                            operations=[*operations, batch], worker_count=worker_count)


def prompt_loader(
    cfg: DataConfig,
    builder: Any,
    *,
    split: str,
    batch_size: int,
    seed: int,
    tools: Sequence[str],
    tokenizer: Any = None,
    shard_index: int = 0,
    shard_count: int = 1,
    describe_functions: FunctionsPrompt | None = None,
    answer_style: str = "tag",
    source: Any = None,
    mode_tag: bool = False,
) -> grain.DataLoader:
    """Prompts for RL (``split="train"``: shuffled, ``cfg.num_epochs``, full batches) or for
    evaluation (``split="heldout"``: storage order, one pass, last batch may be short).
    ``source``: records to read instead of the builder's split (an ``eval.files`` benchmark);
    ``describe_functions`` / ``answer_style``: how function-calling items are prompted;
    ``mode_tag``: ask for AutoTool's mode tag (:class:`AddPrompt`)."""
    train = split == TRAIN
    if split not in (TRAIN, HELDOUT):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'heldout'")
    if source is None:
        source = TaskSource(builder, split)
        if train and cfg.labels_path:  # RL prompts: the labelled items refinement kept for RL
            source = LabelledSource(source, read_labels(cfg.labels_path), "rl")
        if train and cfg.rl_only_fraction > 0:
            source = StageSubset(source, "rl", cfg.rl_only_fraction, cfg.split_seed)
    return make_loader(
        source,
        batch_size=batch_size,
        seed=seed,
        shuffle=cfg.shuffle and train,
        num_epochs=(cfg.num_epochs or None) if train else 1,
        operations=[AddPrompt(tools, tokenizer, describe_functions, answer_style, mode_tag)],
        shard_index=shard_index,
        shard_count=shard_count,
        worker_count=cfg.worker_count,
        drop_remainder=train,
    )


def sft_loader(
    cfg: DataConfig,
    builder: Any,
    *,
    batch_size: int,
    seed: int,
    tools: Sequence[str],
    tokenizer: Any,
    render_result: ResultRenderer | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
    mode_tag: bool = False,
    describe_functions: FunctionsPrompt | None = None,
    answer_style: str = "tag",
) -> grain.DataLoader:
    """AutoTool warm-up batches from the train split: each item is :func:`encode_sft_example`'s
    dict plus ``task`` and ``difficulty``; examples over ``cfg.sft_max_len`` tokens are dropped.

    Pass ``render_result=tool_renderer(syntax, executor)`` to show the real tools' output, exactly
    as rollouts will (with ``worker_count=0``: an executor does not pickle into workers).
    ``mode_tag``: targets open with AutoTool's mode tag and the prompt asks for it
    (:func:`~toolrl_jax.data.sft.make_sft_example`). ``describe_functions`` / ``answer_style``:
    how function-calling items are prompted, as in :func:`prompt_loader`. With
    ``cfg.labels_path`` the modes are the labels' and only items kept for SFT are read."""
    source: Any = TaskSource(builder, TRAIN)
    labels = read_labels(cfg.labels_path) if cfg.labels_path else None
    if labels is not None:
        source = LabelledSource(source, labels, "sft")
    if cfg.rl_only_fraction > 0:
        source = StageSubset(source, "sft", cfg.rl_only_fraction, cfg.split_seed)
    return make_loader(
        source,
        batch_size=batch_size,
        seed=seed,
        shuffle=cfg.shuffle,
        num_epochs=cfg.num_epochs or None,
        operations=[EncodeSFT(cfg, tokenizer, tools, render_result, mode_tag,
                              describe_functions, answer_style, labels),
                    MaxLength(cfg.sft_max_len)],
        shard_index=shard_index,
        shard_count=shard_count,
        worker_count=cfg.worker_count,
    )
