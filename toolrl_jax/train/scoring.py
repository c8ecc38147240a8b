"""Host-side scoring of a round of trajectories: verifier → rewards → filters (NumPy).

Shared by the RL loop (rewards, filters, advantages) and evaluation (accuracy, tool statistics),
so both read answers and count calls the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from toolrl_jax.data.trajectories import detect_mode
from toolrl_jax.data.verifiers import answers_match, is_numeric_task
from toolrl_jax.rl.filters import void_turns
from toolrl_jax.rl.tool_entropy import call_entropy_deltas, call_mask_from_spans, tool_entropy_diagnostics
from toolrl_jax.train.batching import trajectory_arrays
from toolrl_jax.types import ToolStatus, Trajectory


@dataclasses.dataclass
class Scored:
    """One batch of trajectories with everything rewards, filters and metrics need."""

    trajectories: list[Trajectory]
    records: list[dict]  # the task record of each row (question, answer, difficulty, task)
    arrays: dict  # batching.trajectory_arrays(...)
    score_B: np.ndarray  # verifier score in [0, 1]
    has_answer_B: np.ndarray
    short_mode_B: np.ndarray  # 1 = short (no tool call, no thinking)
    delta_entropy_BK: np.ndarray
    delta_valid_BK: np.ndarray
    reduces_BK: np.ndarray
    void_turn_B: np.ndarray


def fast_verifier(answer: str, record: dict) -> float:
    """Training reward check: numeric compare for math tasks, normalised exact match otherwise.
    Cheap enough for every rollout; evaluation uses the stricter ``eval.verifiers.verify``."""
    return float(answers_match(answer, str(record["answer"]), is_numeric_task(record)))


def score_answer(syntax, text: str, record: dict, verifier=fast_verifier) -> tuple[float, bool]:
    answer = syntax.extract_answer(text)
    if answer is None:
        return 0.0, False
    return float(verifier(answer, record)), True


@jax.jit
def _deltas(entropy_BT, segment_ids_BT, num_calls_B, call_spans_BK2):
    k = call_spans_BK2.shape[1]
    d = call_entropy_deltas(entropy_BT, segment_ids_BT, num_calls_B, k)
    return d["delta_BK"], d["valid_BK"], d["reduces_BK"]


@jax.jit
def _diagnostics(entropy_BT, segment_ids_BT, post_tool_mask_BT, num_calls_B, call_spans_BK2):
    call_mask = call_mask_from_spans(call_spans_BK2, entropy_BT.shape[1])
    metrics, _ = tool_entropy_diagnostics(entropy_BT, segment_ids_BT, post_tool_mask_BT,
                                          num_calls_B, call_spans_BK2.shape[1], call_mask)
    return metrics


def score_batch(syntax, trajectories: Sequence[Trajectory], records: Sequence[dict],
                seq_len: int, max_calls: int, verifier=fast_verifier) -> Scored:
    """``verifier(answer, record) -> score in [0, 1]`` grades each extracted answer."""
    arrays = trajectory_arrays(trajectories, seq_len, max_calls)
    scores, has = zip(*(score_answer(syntax, t.text, r, verifier)
                        for t, r in zip(trajectories, records)))
    delta, valid, reduces = jax.device_get(_deltas(arrays["entropy_BT"], arrays["segment_ids_BT"],
                                                   arrays["num_calls_B"], arrays["call_spans_BK2"]))
    short = np.array([detect_mode(t.text) == "short" for t in trajectories], np.float32)
    void = void_turns([t.stop_reason for t in trajectories], np.asarray(has, bool),
                      arrays["call_status_BK"], arrays["num_calls_B"])
    return Scored(list(trajectories), list(records), arrays, np.asarray(scores, np.float32),
                  np.asarray(has, bool), short, np.asarray(delta), np.asarray(valid),
                  np.asarray(reduces), void)


def concat_scored(parts: Sequence[Scored], rows: np.ndarray | None = None) -> Scored:
    """Concatenates rounds (and optionally selects rows) into one Scored batch."""
    def cat(get):
        return np.concatenate([get(p) for p in parts], axis=0)

    trajs = [t for p in parts for t in p.trajectories]
    records = [r for p in parts for r in p.records]
    out = Scored(
        trajs, records, {k: cat(lambda p, k=k: p.arrays[k]) for k in parts[0].arrays},
        cat(lambda p: p.score_B), cat(lambda p: p.has_answer_B), cat(lambda p: p.short_mode_B),
        cat(lambda p: p.delta_entropy_BK), cat(lambda p: p.delta_valid_BK),
        cat(lambda p: p.reduces_BK), cat(lambda p: p.void_turn_B))
    if rows is None:
        return out
    return Scored(
        [out.trajectories[i] for i in rows], [out.records[i] for i in rows],
        {k: v[rows] for k, v in out.arrays.items()}, out.score_B[rows], out.has_answer_B[rows],
        out.short_mode_B[rows], out.delta_entropy_BK[rows], out.delta_valid_BK[rows],
        out.reduces_BK[rows], out.void_turn_B[rows])


def rollout_metrics(s: Scored, prefix: str = "rollout/") -> dict[str, float]:
    """Accuracy, tool use, status mix, lengths and entropy diagnostics of one batch."""
    a = s.arrays
    n_calls = a["num_calls_B"]
    status = a["call_status_BK"]
    exists = np.arange(status.shape[1])[None] < n_calls[:, None]
    total_calls = max(int(exists.sum()), 1)
    out = {
        "accuracy": float(s.score_B.mean()),
        "answered": float(s.has_answer_B.mean()),
        "tool_calls": float(n_calls.mean()),
        "short_mode_frac": float(s.short_mode_B.mean()),
        "response_len": float(a["length_B"].mean()),
    }
    for st in ToolStatus:
        out[f"call_status/{st.name.lower()}"] = float((exists & (status == int(st))).sum()
                                                      / total_calls)
    diag = jax.device_get(_diagnostics(a["entropy_BT"], a["segment_ids_BT"],
                                       a["post_tool_mask_BT"], n_calls, a["call_spans_BK2"]))
    for name, (num, den) in diag.items():
        if float(den) > 0:
            out[name] = float(num) / float(den)
    hard = np.array([r.get("difficulty") == "hard" for r in s.records])
    for name, sel in (("easy", ~hard), ("hard", hard)):
        if sel.any():
            out[f"accuracy_{name}"] = float(s.score_B[sel].mean())
            out[f"tool_calls_{name}"] = float(n_calls[sel].mean())
    return {prefix + k: v for k, v in out.items()}
