"""Held-out evaluation of a policy: accuracy, tool use and compute, overall and per difficulty.

Greedy by default (``eval.greedy``); with ``eval.samples = k > 1`` every item is sampled k times
and pass@k (unbiased estimator) and avg@k are reported alongside.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from toolrl_jax.rollout.engine import RolloutEngine
from toolrl_jax.scoring.scored import score_batch
from toolrl_jax.types import ToolStatus


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 − C(n−c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def evaluate(engine: RolloutEngine, params, batches: Iterable[list[dict]], syntax, *,
             samples: int, seq_len: int, max_calls: int, max_items: int | None = None) -> dict:
    """Runs task records (``batches`` of prompt records with ``prompt_ids``) through the engine,
    ``samples`` completions each, grades them with the training verifier
    (:func:`toolrl_jax.verifiers.grade` via :func:`score_batch`) and returns nested metric dicts
    (:func:`summarize`). Accuracy counts full credit (``correct``) only."""
    rows = []
    seen = 0
    for records in batches:
        if max_items is not None and seen >= max_items:
            break
        records = records[: (max_items - seen) if max_items is not None else None]
        first, seen = seen, seen + len(records)
        positions = {id(r): first + i for i, r in enumerate(records)}
        # A prompt longer than rollout.max_prompt_len cannot be run: it counts as wrong (so
        # accuracy stays over every item) and the summary says how many there were.
        limit = engine.shapes.prefill_len
        for r in records:
            if len(r["prompt_ids"]) > limit:
                rows += [_too_long_row(r) for _ in range(samples)]
        records = [r for r in records if len(r["prompt_ids"]) <= limit]
        if not records:
            continue
        # A function-calling item's call of its own functions is its answer: not executed.
        trajs = engine.generate(params, [r["prompt_ids"] for r in records], samples,
                                prompt_ids=[positions[id(r)] for r in records],
                                answer_calls=[r.get("functions", ()) for r in records])
        expanded = [r for r in records for _ in range(samples)]
        scored = score_batch(syntax, trajs, expanded, seq_len, max_calls)
        a = scored.arrays
        for i, (t, r) in enumerate(zip(trajs, expanded)):
            statuses = [c.status for c in t.calls]
            rows.append({
                "id": r["id"], "task": r.get("task", ""), "difficulty": r.get("difficulty", ""),
                "category": (r.get("metadata") or {}).get("category", ""),
                "correct": float(scored.correct_B[i]), "score": float(scored.score_B[i]),
                "calls": len(t.calls), "ok_calls": sum(s == ToolStatus.OK for s in statuses),
                "tokens": int(a.length_B[i]), "short": float(scored.short_mode_B[i]),
                "reducing": int(scored.reduces_BK[i].sum()),
                "valid_deltas": int(scored.delta_valid_BK[i].sum()),
                "delta_sum": float((scored.delta_entropy_BK[i] * scored.delta_valid_BK[i]).sum()),
            })
    return summarize(rows, samples)


def _too_long_row(r: dict) -> dict:
    return {"id": r["id"], "task": r.get("task", ""), "difficulty": r.get("difficulty", ""),
            "category": (r.get("metadata") or {}).get("category", ""), "correct": 0.0,
            "score": 0.0, "calls": 0, "ok_calls": 0, "tokens": 0, "short": 0.0, "reducing": 0,
            "valid_deltas": 0, "delta_sum": 0.0, "too_long": 1}


def _summary(rows: list[dict], samples: int) -> dict:
    correct = np.array([r["correct"] for r in rows])
    calls = np.array([r["calls"] for r in rows])
    tokens = np.array([r["tokens"] for r in rows])
    ok = sum(r["ok_calls"] for r in rows)
    valid = sum(r["valid_deltas"] for r in rows)
    out = {
        "items": len(rows) // samples,
        "prompts_too_long": sum(r.get("too_long", 0) for r in rows) // samples,
        "accuracy": float(correct.mean()),
        # Mean verifier score: equals accuracy for math and calls; token F1 for QA.
        "score": float(np.mean([r.get("score", r["correct"]) for r in rows])),
        "tool_calls": float(calls.mean()),
        "tool_success": ok / max(int(calls.sum()), 1),
        "tokens": float(tokens.mean()),
        # Accuracy per 100 generated tokens: how much correctness each unit of compute buys.
        "acc_per_100_tokens": float(correct.mean() / max(tokens.mean(), 1e-9) * 100),
        "short_mode_frac": float(np.mean([r["short"] for r in rows])),
        "entropy_reducing_share": sum(r["reducing"] for r in rows) / valid if valid else float("nan"),
        "mean_delta_entropy": (sum(r["delta_sum"] for r in rows) / valid if valid
                               else float("nan")),
    }
    if samples > 1:
        by_item = defaultdict(list)
        for r in rows:
            by_item[r["id"]].append(r["correct"])
        out[f"pass@{samples}"] = float(np.mean([pass_at_k(len(v), int(sum(v)), samples)
                                                for v in by_item.values()]))
        out[f"avg@{samples}"] = float(np.mean([np.mean(v) for v in by_item.values()]))
    return out


def summarize(rows: list[dict], samples: int = 1) -> dict:
    """``{"all": {...}, "easy": {...}, "hard": {...}, "<task>": {...}, "<category>": {...}}``
    (a category: e.g. a BFCL one, ``simple_python``, from the record's metadata)."""
    if not rows:
        raise ValueError("evaluation produced no rows (empty split or max_items=0)")
    groups = {"all": rows}
    for key in ("difficulty", "task", "category"):
        for value in sorted({r.get(key, "") for r in rows if r.get(key)}):
            groups[value] = [r for r in rows if r[key] == value]
    return {name: _summary(g, samples) for name, g in groups.items()}
