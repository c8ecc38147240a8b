"""Held-out evaluation of a policy: accuracy, tool use and compute, overall and per difficulty.

Greedy by default (``eval.greedy``); with ``eval.samples = k > 1`` every item is sampled k times
and pass@k (unbiased estimator) and avg@k are reported alongside.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from toolrl_jax.data.pipeline import prompt_loader
from toolrl_jax.eval.verifiers import verify
from toolrl_jax.train.experiment import Experiment
from toolrl_jax.train.scoring import score_batch
from toolrl_jax.train.state import Policy
from toolrl_jax.types import ToolStatus


def eval_verifier(answer: str, record: dict) -> float:
    """math-verify for math tasks (boxed / LaTeX / number forms), exact match for QA, exact call
    match for function calling (``toolrl_jax.eval.verifiers``). Accuracy counts full credit only."""
    return float(verify(answer, record).correct)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 − C(n−c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def evaluate(exp: Experiment, policy: Policy, params, *, max_items: int | None = None) -> dict:
    """Runs the held-out split through the rollout engine; returns nested metric dicts."""
    cfg = exp.cfg
    ec = cfg.eval
    samples = 1 if ec.greedy else ec.samples
    batch_prompts = ec.prompts_per_batch
    engine = exp.engine(policy, greedy=ec.greedy, batch=batch_prompts * samples,
                        seed=cfg.train.seed + 1)
    loader = prompt_loader(cfg.data, exp.builder, split=ec.split, batch_size=batch_prompts,
                           seed=cfg.train.seed, tools=exp.tool_names, tokenizer=exp.tokenizer)
    limit = max_items if max_items is not None else (ec.max_items or None)
    rows = []
    seen = 0
    for records in loader:
        if limit is not None and seen >= limit:
            break
        records = records[: (limit - seen) if limit is not None else None]
        seen += len(records)
        trajs = engine.generate(params, [r["prompt_ids"] for r in records], samples,
                                prompt_ids=list(range(seen - len(records), seen)))
        expanded = [r for r in records for _ in range(samples)]
        scored = score_batch(exp.syntax, trajs, expanded, exp.train_seq_len,
                             cfg.rollout.max_tool_calls, verifier=eval_verifier)
        a = scored.arrays
        for i, (t, r) in enumerate(zip(trajs, expanded)):
            statuses = [c.status for c in t.calls]
            rows.append({
                "id": r["id"], "task": r.get("task", ""), "difficulty": r.get("difficulty", ""),
                "correct": float(scored.score_B[i]), "calls": len(t.calls),
                "ok_calls": sum(s == ToolStatus.OK for s in statuses),
                "tokens": int(a["length_B"][i]), "short": float(scored.short_mode_B[i]),
                "reducing": int(scored.reduces_BK[i].sum()),
                "valid_deltas": int(scored.delta_valid_BK[i].sum()),
                "delta_sum": float((scored.delta_entropy_BK[i] * scored.delta_valid_BK[i]).sum()),
            })
    return summarize(rows, samples)


def _summary(rows: list[dict], samples: int) -> dict:
    correct = np.array([r["correct"] for r in rows])
    calls = np.array([r["calls"] for r in rows])
    tokens = np.array([r["tokens"] for r in rows])
    ok = sum(r["ok_calls"] for r in rows)
    valid = sum(r["valid_deltas"] for r in rows)
    out = {
        "items": len(rows) // samples,
        "accuracy": float(correct.mean()),
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
    """``{"all": {...}, "easy": {...}, "hard": {...}, "<task>": {...}}``."""
    if not rows:
        raise ValueError("evaluation produced no rows (empty split or max_items=0)")
    groups = {"all": rows}
    for key in ("difficulty", "task"):
        for value in sorted({r[key] for r in rows if r[key]}):
            groups[value] = [r for r in rows if r[key] == value]
    return {name: _summary(g, samples) for name, g in groups.items()}
