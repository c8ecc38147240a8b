"""Host-side assembly of trajectories and SFT examples into padded, static-shape arrays.

Every batch is padded to ``[B, T]`` with one T per run (``Experiment.train_seq_len`` for RL, the
SFT length for warm-up), so the jitted steps compile once. The containers are registered
dataclasses (pytrees): ``jax.tree.map(lambda x: x[rows], arrays)`` selects rows of every field,
``jax.tree.map(lambda *xs: np.concatenate(xs), *parts)`` joins rounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from toolrl_jax.buckets import round_up
from toolrl_jax.types import ToolStatus, Trajectory


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrajectoryArrays:
    """Token-aligned rollout arrays (NumPy). ``[B, T]`` per token, ``[B, K]`` per call slot
    (K = ``max(max_calls, 1)``; padded slots are -1), ``[B]`` per row.

    ``loss_mask_BT`` is 1 on sampled tokens; ``old_logp_BT`` / ``entropy_BT`` hold the sampler's
    log-prob / entropy of the token at t (0 elsewhere); ``segment_ids_BT`` is -1 off model text.
    """

    tokens_BT: np.ndarray  # int32
    attn_mask_BT: np.ndarray  # int32; 1 on real tokens
    loss_mask_BT: np.ndarray  # float32
    old_logp_BT: np.ndarray  # float32
    entropy_BT: np.ndarray  # float32
    post_tool_mask_BT: np.ndarray  # float32
    segment_ids_BT: np.ndarray  # int32
    call_status_BK: np.ndarray  # int32 ToolStatus codes
    call_spans_BK2: np.ndarray  # int32 [start, end) of each call's text
    num_calls_B: np.ndarray  # int32
    length_B: np.ndarray  # int32; generated (sampled) tokens

    @property
    def longest(self) -> int:
        """Tokens in the longest row (prompt + response + tool results)."""
        return int(self.attn_mask_BT.sum(axis=1).max(initial=0))

    def truncate(self, seq_len: int) -> TrajectoryArrays:
        """The same rows padded to ``seq_len`` instead (every ``[B, T]`` field cut; nothing real
        may be cut: ``seq_len`` must hold the longest row)."""
        if seq_len < self.longest:
            raise ValueError(f"seq_len={seq_len} would cut rows of {self.longest} tokens")
        cut = {f.name: getattr(self, f.name)[:, :seq_len] for f in dataclasses.fields(self)
               if f.name.endswith("_BT")}
        return dataclasses.replace(self, **cut)


def bucketed_length(longest: int, bucket: int, maximum: int) -> int:
    """The padded length for a batch whose longest row has ``longest`` tokens: the next multiple
    of ``bucket``, at most ``maximum``. Few distinct lengths (one compiled step each) instead of
    every batch paying for the longest possible row."""
    if longest > maximum:
        raise ValueError(f"a row of {longest} tokens exceeds the train length {maximum}")
    return min(round_up(max(longest, 1), bucket), maximum)


def trajectory_arrays(trajs: Sequence[Trajectory], seq_len: int, max_calls: int) -> TrajectoryArrays:
    """Pads trajectories into :class:`TrajectoryArrays`.

    Trajectories longer than ``seq_len`` are an error (the rollout cache bounds their length, so
    this means the config's train length is smaller than ``rollout.max_cache_len``).
    """
    b, k = len(trajs), max(max_calls, 1)
    tokens = np.zeros((b, seq_len), np.int32)
    attn = np.zeros((b, seq_len), np.int32)
    loss = np.zeros((b, seq_len), np.float32)
    old_logp = np.zeros((b, seq_len), np.float32)
    entropy = np.zeros((b, seq_len), np.float32)
    post_tool = np.zeros((b, seq_len), np.float32)
    segments = np.full((b, seq_len), -1, np.int32)
    status = np.full((b, k), -1, np.int32)
    spans = np.full((b, k, 2), -1, np.int32)
    num_calls = np.zeros((b,), np.int32)
    length = np.zeros((b,), np.int32)
    for i, t in enumerate(trajs):
        n = len(t.tokens)
        if n > seq_len:
            raise ValueError(f"trajectory of {n} tokens exceeds the train length {seq_len}")
        tokens[i, :n] = t.tokens
        attn[i, :n] = 1
        loss[i, :n] = t.loss_mask
        old_logp[i, :n] = t.old_logp
        entropy[i, :n] = t.entropy
        post_tool[i, :n] = t.post_tool_mask
        segments[i, :n] = t.segment_ids
        calls = t.calls[:max_calls]
        num_calls[i] = len(calls)
        for j, c in enumerate(calls):
            status[i, j] = int(ToolStatus(c.status))
            spans[i, j] = c.call_span
        length[i] = t.num_generated
    return TrajectoryArrays(tokens, attn, loss, old_logp, entropy, post_tool, segments, status,
                            spans, num_calls, length)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SFTBatch:
    """One SFT step's input, ``[B, T]``: right-padded tokens, 1 on real tokens, 1 on the tokens
    the model learns to produce (model turns; prompt and tool results are 0)."""

    tokens_BT: np.ndarray  # int32
    attn_mask_BT: np.ndarray  # int32
    loss_mask_BT: np.ndarray  # float32


def sft_batch(examples: Sequence[dict], seq_len: int, bucket: int = 0) -> SFTBatch:
    """SFT examples (``tokens`` + ``loss_mask`` per example) → a padded :class:`SFTBatch`, padded
    to ``seq_len`` or, with ``bucket`` > 0, to :func:`bucketed_length` of its longest example."""
    if bucket:  # an example longer than seq_len still fails below, with its own message
        longest = max((len(ex["tokens"]) for ex in examples), default=1)
        seq_len = min(round_up(max(longest, 1), bucket), seq_len)
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
    return SFTBatch(tokens, attn, loss)


def take_rows(tree, rows: np.ndarray):
    """Rows ``rows`` of every ``[B, ...]`` array of a pytree batch."""
    return jax.tree.map(lambda x: x[rows], tree)


def concat_rows(parts: Sequence):
    """Row-wise concatenation of pytree batches with the same structure."""
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *parts)
