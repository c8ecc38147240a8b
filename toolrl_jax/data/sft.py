"""AutoTool warm-up examples: record -> (prompt messages, segmented completion) -> token ids + mask.

Tokenisation mirrors a rollout exactly: the prompt is the chat template with the generation
prompt, each completion segment is tokenised on its own (the engine stops the model after a tool
call and appends the separately tokenised ``<result>`` block), and the turn ends with the
tokenizer's EOS. The loss mask is 1 on ``model`` segments and the EOS, 0 on the prompt and on
``tool_result`` segments — the model learns to call tools, never to imitate their output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from toolrl_jax.data.modes import tag_completion
from toolrl_jax.data.prompts import prompt_messages
from toolrl_jax.data.trajectories import (
    Policy,
    ResultRenderer,
    SFTExample,
    choose_mode,
    short_completion,
    split_segments,
)


def make_sft_example(
    record: Mapping[str, Any],
    *,
    policy: Policy,
    p_long: float,
    seed: int,
    tools: Sequence[str],
    render_result: ResultRenderer | None = None,
    mode_tag: bool = False,
) -> SFTExample:
    """Labels ``record`` short or long by ``policy`` and builds its example.

    A record without a trajectory has no long form and is always short (its ``mode`` says so).
    ``render_result`` renders each tool result (default: the XML wrapper around the stored
    output; :func:`~toolrl_jax.data.trajectories.tool_renderer` runs the real tools).
    ``mode_tag``: open the target with AutoTool's auto-think mode tag
    (:func:`toolrl_jax.data.modes.tag_completion`: the empty ``<think></think>`` for short, the
    trajectory's own leading think block for long), so the model learns to choose a mode first,
    and ask for the tag in the system prompt as RL and evaluation prompts then do.
    """
    mode = choose_mode(policy, item_id=record["id"], difficulty=record["difficulty"],
                       p_long=p_long, seed=seed)
    if mode == "long" and not record["trajectory"]:
        mode = "short"
    text = record["trajectory"] if mode == "long" else short_completion(record["answer"])
    if mode_tag:
        text = tag_completion(text, mode)
    return SFTExample(
        id=record["id"],
        messages=prompt_messages(record["question"], tools, mode_tag),
        segments=split_segments(text, render_result),
        mode=mode,
    )


def encode_prompt(tokenizer: Any, messages: Sequence[Mapping[str, str]],
                  tools: Sequence[Mapping[str, Any]] | None = None) -> np.ndarray:
    """Prompt token ids: the chat template up to and including the assistant header.

    Rendered to text, then encoded without adding special tokens: a template that wants a BOS
    writes it itself, so none is doubled. ``tools`` (chat-template function specs) go to the
    template, which renders them (Qwen2.5 / Llama-3.1 style).
    """
    extra = {"tools": [dict(t) for t in tools]} if tools else {}
    text = tokenizer.apply_chat_template(
        [dict(m) for m in messages], add_generation_prompt=True, tokenize=False, **extra
    )
    return np.asarray(tokenizer.encode(text, add_special_tokens=False), np.int32)


def encode_sft_example(tokenizer: Any, example: SFTExample) -> dict[str, Any]:
    """Token ids and loss mask of one example (unpadded; ``buckets.py`` owns padded shapes).

    Returns ``tokens`` int32 [T], ``loss_mask`` int8 [T], ``segment_kinds`` int8 [T] (0 prompt,
    1 model, 2 tool result), ``prompt_len``, ``mode``, ``is_short`` and ``id``.
    """
    prompt = encode_prompt(tokenizer, example.messages, example.tools or None)
    pieces, masks, kinds = [prompt], [np.zeros(len(prompt), np.int8)], [np.zeros(len(prompt))]
    for segment in example.segments:
        ids = np.asarray(tokenizer.encode(segment.text, add_special_tokens=False), np.int32)
        is_model = segment.kind == "model"
        pieces.append(ids)
        masks.append(np.full(len(ids), int(is_model), np.int8))
        kinds.append(np.full(len(ids), 1 if is_model else 2))
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("tokenizer has no eos_token; the SFT target must end with one")
    pieces.append(np.asarray([eos], np.int32))
    masks.append(np.ones(1, np.int8))
    kinds.append(np.ones(1))
    return {
        "id": example.id,
        "tokens": np.concatenate(pieces).astype(np.int32),
        "loss_mask": np.concatenate(masks).astype(np.int8),
        "segment_kinds": np.concatenate(kinds).astype(np.int8),
        "prompt_len": len(prompt),
        "mode": example.mode,
        "is_short": example.mode == "short",
    }
