"""Host-side scoring of a round of trajectories: verifier verdicts, modes, ΔH per call, void turns.

Shared by the RL loop (rewards, filters, advantages) and evaluation (accuracy, tool statistics),
so both grade answers with the same function (:func:`toolrl_jax.verifiers.grade`) and count calls
the same way. A training reward and an evaluation verdict of the same completion cannot differ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from toolrl_jax.data.modes import Mode, detect_mode
from toolrl_jax.rl.filters import void_turns
from toolrl_jax.rl.tool_entropy import call_entropy_deltas, call_mask_from_spans, tool_entropy_diagnostics
from toolrl_jax.scoring.arrays import TrajectoryArrays, concat_rows, take_rows, trajectory_arrays
from toolrl_jax.types import ToolStatus, Trajectory
from toolrl_jax.verifiers import answer_of, answered, verify


def _objects(items: Sequence) -> np.ndarray:
    """A 1-D object array (so host records select and join like every other ``[B]`` field)."""
    out = np.empty(len(items), object)
    for i, item in enumerate(items):
        out[i] = item
    return out


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Scored:
    """One batch of scored trajectories: every field is a ``[B, ...]`` array, so
    ``jax.tree.map(lambda x: x[rows], scored)`` selects rows (:meth:`take`) and
    :func:`concat_scored` joins rounds.

    ``score_B`` is the verifier's score in [0, 1] (1/0 for math and calls, token F1 for QA): the
    outcome reward. ``correct_B`` is full credit (exact): accuracy, AutoTool's correctness and
    TAO-RL's all-correct/all-wrong filter.
    """

    trajectories_B: np.ndarray  # object [B]: Trajectory
    records_B: np.ndarray  # object [B]: the task record of each row (question, answer, task, …)
    arrays: TrajectoryArrays
    score_B: np.ndarray  # float32
    correct_B: np.ndarray  # float32 0/1
    has_answer_B: np.ndarray  # bool
    short_mode_B: np.ndarray  # float32; 1 = short = no_think (data/modes.py:detect_mode)
    delta_entropy_BK: np.ndarray  # float32; ΔH_k (rl.tool_entropy.call_entropy_deltas)
    delta_valid_BK: np.ndarray  # bool; ΔH_k defined
    reduces_BK: np.ndarray  # bool; valid and ΔH_k < 0
    void_turn_B: np.ndarray  # bool; SimpleTIR void turn (rl.filters.void_turns)

    @property
    def trajectories(self) -> list[Trajectory]:
        return list(self.trajectories_B)

    @property
    def records(self) -> list[dict]:
        return list(self.records_B)

    def take(self, rows: np.ndarray) -> Scored:
        return take_rows(self, np.asarray(rows))


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
                seq_len: int, max_calls: int, forced_mode: Mode | None = None) -> Scored:
    """Grades each completion (``syntax.answer_style`` says where its answer is), detects its
    AutoTool mode (the mode tag; untagged: a think block or an executed call, for any syntax) and
    computes the per-call entropy deltas (one jitted call) for the whole batch. ``forced_mode``:
    the mode every row was forced into by a prompt prefix (``data/modes.py:forced_prefix``),
    which the completion text then lacks."""
    if len(trajectories) != len(records):
        raise ValueError(f"{len(trajectories)} trajectories but {len(records)} records")
    arrays = trajectory_arrays(trajectories, seq_len, max_calls)
    # grade() = answer_of + verify, unrolled so each answer is read once.
    # Function-calling items: the calls of the final turn, read by the syntax's own parser.
    parse_calls = getattr(syntax, "answer_calls", None)
    answers = [answer_of(t.text, r, syntax.answer_style, parse_calls)
               for t, r in zip(trajectories, records)]
    verdicts = [verify(a, r) for a, r in zip(answers, records)]
    has = np.array([answered(a, t.text, syntax.answer_style)
                    for a, t in zip(answers, trajectories)], bool)
    delta, valid, reduces = jax.device_get(_deltas(arrays.entropy_BT, arrays.segment_ids_BT,
                                                   arrays.num_calls_B, arrays.call_spans_BK2))
    modes = [forced_mode or detect_mode(t.text, syntax, t.calls) for t in trajectories]
    short = np.array([m == "short" for m in modes], np.float32)
    void = void_turns([t.stop_reason for t in trajectories], has, arrays.call_status_BK,
                      arrays.num_calls_B)
    return Scored(
        trajectories_B=_objects(trajectories), records_B=_objects(records), arrays=arrays,
        score_B=np.array([v.score for v in verdicts], np.float32),
        correct_B=np.array([v.correct for v in verdicts], np.float32),
        has_answer_B=has, short_mode_B=short, delta_entropy_BK=np.asarray(delta),
        delta_valid_BK=np.asarray(valid, bool), reduces_BK=np.asarray(reduces, bool),
        void_turn_B=np.asarray(void, bool))


def concat_scored(parts: Sequence[Scored]) -> Scored:
    """Joins rounds row-wise (select afterwards with :meth:`Scored.take`)."""
    return parts[0] if len(parts) == 1 else concat_rows(parts)


def rollout_metrics(s: Scored, prefix: str = "rollout/") -> dict[str, float]:
    """Accuracy, tool use, status mix, lengths and entropy diagnostics of one batch."""
    a = s.arrays
    n_calls = a.num_calls_B
    status = a.call_status_BK
    exists = np.arange(status.shape[1])[None] < n_calls[:, None]
    total_calls = max(int(exists.sum()), 1)
    out = {
        "accuracy": float(s.correct_B.mean()),
        "score": float(s.score_B.mean()),
        "answered": float(s.has_answer_B.mean()),
        "tool_calls": float(n_calls.mean()),
        "short_mode_frac": float(s.short_mode_B.mean()),
        "think_rate": float(1.0 - s.short_mode_B.mean()),
        "response_len": float(a.length_B.mean()),
    }
    for st in ToolStatus:
        out[f"call_status/{st.name.lower()}"] = float((exists & (status == int(st))).sum()
                                                      / total_calls)
    diag = jax.device_get(_diagnostics(a.entropy_BT, a.segment_ids_BT, a.post_tool_mask_BT,
                                       n_calls, a.call_spans_BK2))
    for name, (num, den) in diag.items():
        if float(den) > 0:
            out[name] = float(num) / float(den)
    hard = np.array([r.get("difficulty") == "hard" for r in s.records_B], bool)
    for name, sel in (("easy", ~hard), ("hard", hard)):
        if sel.any():
            out[f"accuracy_{name}"] = float(s.correct_B[sel].mean())
            out[f"tool_calls_{name}"] = float(n_calls[sel].mean())
            out[f"think_rate_{name}"] = float(1.0 - s.short_mode_B[sel].mean())
    return {prefix + k: v for k, v in out.items()}
