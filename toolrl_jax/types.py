"""Shared record types and the axis-letter glossary (layer L0: no compute, no JAX).

Axis letters used in array names across the project (``logp_BT``, ``adv_BK`` …):

    B  batch rows (trajectories)          G  rollouts per prompt (group size)
    T  time / token position              V  vocabulary
    D  model (hidden) dimension           K  tool calls within one trajectory
    H  attention heads                    L  layers / cache length (context)

Token-level conventions (kept identical by the rollout engine, the RL math and the train step):

* ``loss_mask`` is 1 only on tokens the policy sampled; prompt, tool-result and padding tokens are 0.
* ``segment_ids``: segment k is the model text *after* tool result k (segment 0 is the text before
  the first call). Each tool call's own text is sampled by the model, so call k closes segment k.
  Non-model tokens (prompt, tool results, padding) carry ``-1``.
* ``post_tool_mask`` is 1 on the model turn that directly follows a tool result (segments k >= 1).
* Call status codes are the integers of :class:`ToolStatus`; padded call slots are ``-1``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

import numpy as np

from toolrl_jax.jsonl import iter_json_lines


class ToolStatus(enum.IntEnum):
    """Outcome of one tool call, as seen by filters and metrics."""

    OK = 0
    ERROR = 1
    TIMEOUT = 2
    EMPTY = 3
    INVALID_CALL = 4

    @property
    def failed(self) -> bool:
        return self is not ToolStatus.OK


class StopReason(enum.StrEnum):
    """Why a trajectory ended."""

    EOS = "eos"  # the model emitted an end-of-sequence token
    ANSWER = "answer"  # the model closed its answer
    BUDGET = "budget"  # max new tokens reached
    CACHE_FULL = "cache_full"  # KV cache has no room left
    MAX_TURNS = "max_turns"  # max tool calls / turns reached


@dataclasses.dataclass
class ToolCallRecord:
    """One tool call inside a trajectory. Spans are [start, end) token indices into ``tokens``."""

    name: str
    arguments: str
    status: ToolStatus
    output: str
    call_span: tuple[int, int]
    result_span: tuple[int, int]


@dataclasses.dataclass
class Trajectory:
    """A token-exact rollout: what was sampled plus the tool tokens appended, nothing re-tokenized.

    All per-token arrays have length ``len(tokens)``.
    """

    prompt_id: int
    sample_id: int  # index within the group
    tokens: np.ndarray  # int32 [T]
    loss_mask: np.ndarray  # int8/bool [T]; 1 on sampled tokens
    old_logp: np.ndarray  # float32 [T]; sampler logprob of sampled tokens, 0 elsewhere
    entropy: np.ndarray  # float32 [T]; policy entropy at sampled tokens, 0 elsewhere
    segment_ids: np.ndarray  # int32 [T]; -1 on non-model tokens
    post_tool_mask: np.ndarray  # int8 [T]
    prompt_len: int
    calls: list[ToolCallRecord]
    stop_reason: StopReason
    text: str = ""
    reward: float = 0.0
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def num_calls(self) -> int:
        return len(self.calls)

    @property
    def num_generated(self) -> int:
        return int(np.asarray(self.loss_mask).sum())

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt_id,
            "sample_id": self.sample_id,
            "tokens": np.asarray(self.tokens).tolist(),
            "loss_mask": np.asarray(self.loss_mask).astype(int).tolist(),
            "old_logp": np.asarray(self.old_logp, np.float32).tolist(),
            "entropy": np.asarray(self.entropy, np.float32).tolist(),
            "segment_ids": np.asarray(self.segment_ids).tolist(),
            "post_tool_mask": np.asarray(self.post_tool_mask).astype(int).tolist(),
            "prompt_len": self.prompt_len,
            "calls": [
                {
                    "name": c.name,
                    "arguments": c.arguments,
                    "status": ToolStatus(c.status).name.lower(),
                    "output": c.output,
                    "call_span": list(c.call_span),
                    "result_span": list(c.result_span),
                }
                for c in self.calls
            ],
            "stop_reason": StopReason(self.stop_reason).value,
            "text": self.text,
            "reward": float(self.reward),
            "metadata": self.metadata,
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Trajectory:
        try:
            calls = [
                ToolCallRecord(
                    name=c["name"],
                    arguments=c["arguments"],
                    status=ToolStatus[c["status"].upper()],
                    output=c["output"],
                    call_span=tuple(c["call_span"]),
                    result_span=tuple(c["result_span"]),
                )
                for c in row["calls"]
            ]
            return cls(
                prompt_id=int(row["prompt_id"]),
                sample_id=int(row["sample_id"]),
                tokens=np.asarray(row["tokens"], np.int32),
                loss_mask=np.asarray(row["loss_mask"], np.int8),
                old_logp=np.asarray(row["old_logp"], np.float32),
                entropy=np.asarray(row["entropy"], np.float32),
                segment_ids=np.asarray(row["segment_ids"], np.int32),
                post_tool_mask=np.asarray(row["post_tool_mask"], np.int8),
                prompt_len=int(row["prompt_len"]),
                calls=calls,
                stop_reason=StopReason(row["stop_reason"]),
                text=row.get("text", ""),
                reward=float(row.get("reward", 0.0)),
                metadata=dict(row.get("metadata", {})),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"malformed trajectory record: {type(e).__name__}: {e}") from e


def dump_trajectories(path: str, trajectories: list[Trajectory]) -> None:
    """Appends trajectories to a JSONL file (one record per line)."""
    with open(path, "a", encoding="utf-8") as f:
        for t in trajectories:
            f.write(json.dumps(t.to_json()) + "\n")


def load_trajectories(path: str) -> list[Trajectory]:
    out = []
    for lineno, row in iter_json_lines(path):
        try:
            out.append(Trajectory.from_json(row))
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: {e}") from e
    return out
