"""Host-side assembly of trajectories and SFT examples into padded, static-shape arrays.

Every train batch is padded to ``[B, T]`` with T from :mod:`toolrl_jax.buckets` (one fixed length
per run), so the jitted steps compile once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from toolrl_jax.types import ToolStatus, Trajectory


def trajectory_arrays(trajs: Sequence[Trajectory], seq_len: int, max_calls: int) -> dict:
    """Token-aligned arrays ``[B, T]`` plus per-call ``[B, K]`` and per-row ``[B]`` facts.

    Trajectories longer than ``seq_len`` are an error (the rollout cache bounds their length, so
    this means the config's train length is smaller than ``rollout.max_cache_len``).
    """
    b = len(trajs)
    out = {
        "tokens_BT": np.zeros((b, seq_len), np.int32),
        "attn_mask_BT": np.zeros((b, seq_len), np.int32),
        "loss_mask_BT": np.zeros((b, seq_len), np.float32),
        "old_logp_BT": np.zeros((b, seq_len), np.float32),
        "entropy_BT": np.zeros((b, seq_len), np.float32),
        "post_tool_mask_BT": np.zeros((b, seq_len), np.float32),
        "segment_ids_BT": np.full((b, seq_len), -1, np.int32),
        "call_status_BK": np.full((b, max(max_calls, 1)), -1, np.int32),
        "call_spans_BK2": np.full((b, max(max_calls, 1), 2), -1, np.int32),
        "num_calls_B": np.zeros((b,), np.int32),
        "length_B": np.zeros((b,), np.int32),
    }
    for i, t in enumerate(trajs):
        n = len(t.tokens)
        if n > seq_len:
            raise ValueError(f"trajectory of {n} tokens exceeds the train length {seq_len}")
        out["tokens_BT"][i, :n] = t.tokens
        out["attn_mask_BT"][i, :n] = 1
        out["loss_mask_BT"][i, :n] = t.loss_mask
        out["old_logp_BT"][i, :n] = t.old_logp
        out["entropy_BT"][i, :n] = t.entropy
        out["post_tool_mask_BT"][i, :n] = t.post_tool_mask
        out["segment_ids_BT"][i, :n] = t.segment_ids
        calls = t.calls[:max_calls]
        out["num_calls_B"][i] = len(calls)
        for k, c in enumerate(calls):
            out["call_status_BK"][i, k] = int(ToolStatus(c.status))
            out["call_spans_BK2"][i, k] = c.call_span
        out["length_B"][i] = t.num_generated
    return out


def sft_arrays(examples: Sequence[dict], seq_len: int) -> dict:
    """SFT examples (``tokens`` + ``loss_mask`` per example) → padded ``[B, T]`` arrays."""
    b = len(examples)
    tokens = np.zeros((b, seq_len), np.int32)
    attn = np.zeros((b, seq_len), np.int32)
    loss = np.zeros((b, seq_len), np.float32)
    for i, ex in enumerate(examples):
        toks = np.asarray(ex["tokens"], np.int32)
        n = len(toks)
        if n > seq_len:
            raise ValueError(f"SFT example of {n} tokens exceeds the train length {seq_len}")
        tokens[i, :n] = toks
        attn[i, :n] = 1
        loss[i, :n] = np.asarray(ex["loss_mask"], np.float32)
    return {"tokens_BT": tokens, "attn_mask_BT": attn, "loss_mask_BT": loss}


def select_rows(arrays: dict, rows: np.ndarray) -> dict:
    return {k: v[rows] for k, v in arrays.items()}
