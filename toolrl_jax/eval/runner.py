"""Held-out evaluation of a policy: accuracy, tool use and compute, overall and per difficulty.

Greedy by default (``eval.greedy``); with ``eval.samples = k > 1`` every item is sampled k times
and pass@k (unbiased estimator) and avg@k are reported alongside.

AutoTool's think modes (``eval.think_modes``, :class:`ThinkSetting`): ``auto`` lets the model open
with its own mode tag; ``think`` / ``no_think`` append ``data/modes.py:forced_prefix`` to every
prompt and score every completion in that mode. Several modes are evaluated one after the other
and laid out in one result (:func:`by_think_mode`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, get_args

import numpy as np

from toolrl_jax.data.modes import MODE_OF_TAG, Mode, ThinkMode, forced_prefix
from toolrl_jax.rollout.engine import RolloutEngine
from toolrl_jax.scoring.scored import score_batch
from toolrl_jax.types import ToolStatus

THINK_MODES: tuple[str, ...] = get_args(ThinkMode)  # ("auto", "think", "no_think")
BY_MODE_KEY = "think_modes"  # eval_<policy>.json: every mode's result, when several ran


@dataclasses.dataclass(frozen=True)
class ThinkSetting:
    """One evaluation mode and the tokens that force it.

    ``prefix_ids`` (int32 [n], empty for ``auto``) is :func:`forced_prefix` tokenised on its own
    and appended to every prompt's ids: prompts end with the chat template's assistant header
    (a newline in ChatML / Llama-3), so no BPE merge crosses the seam, and ``<think>`` is one
    token in the demo tokenizer and in Qwen3-style vocabularies. The prefix is prompt, not
    completion, so the completion lacks the tag and :attr:`forced` tells scoring the mode.
    """

    mode: ThinkMode
    prefix_ids: np.ndarray

    @classmethod
    def of(cls, mode: ThinkMode, tokenizer: Any) -> ThinkSetting:
        """``mode``'s prefix tokenised by the run's ``tokenizer`` (a bad name raises)."""
        if mode not in THINK_MODES:
            raise ValueError(f"think mode {mode!r} is not one of {list(THINK_MODES)}")
        text = forced_prefix(mode)
        ids = tokenizer.encode(text, add_special_tokens=False) if text else []
        return cls(mode, np.asarray(ids, np.int32))

    @property
    def forced(self) -> Mode | None:
        """The mode every completion is in (None: ``auto``, detected per completion)."""
        return MODE_OF_TAG.get(self.mode)

    def apply(self, record: dict) -> dict:
        """``record`` with the prefix appended to its ``prompt_ids`` (unchanged for auto)."""
        if not len(self.prefix_ids):
            return record
        ids = np.concatenate([np.asarray(record["prompt_ids"], np.int32), self.prefix_ids])
        return {**record, "prompt_ids": ids}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 − C(n−c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def evaluate(engine: RolloutEngine, params, batches: Iterable[list[dict]], syntax, *,
             samples: int, seq_len: int, max_calls: int, max_items: int | None = None,
             think: ThinkSetting | None = None, item_metrics: dict | None = None) -> dict:
    """Runs task records (``batches`` of prompt records with ``prompt_ids``) through the engine,
    ``samples`` completions each, grades them with the training verifier
    (:func:`toolrl_jax.verifiers.grade` via :func:`score_batch`) and returns nested metric dicts
    (:func:`summarize`). Accuracy counts full credit (``correct``) only. ``think``: a forced
    think mode (its prefix is appended to every prompt before the length check, and every
    completion is scored in that mode); None = auto. ``item_metrics``: filled with each item's
    means over its samples, ``{metric: {id: float}}`` for :data:`ITEM_METRICS` — what paired
    bootstrap intervals resample (:mod:`toolrl_jax.eval.bootstrap`)."""
    rows = []
    seen = 0
    for records in batches:
        if max_items is not None and seen >= max_items:
            break
        records = records[: (max_items - seen) if max_items is not None else None]
        if think is not None:
            records = [think.apply(r) for r in records]
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
        scored = score_batch(syntax, trajs, expanded, seq_len, max_calls,
                             forced_mode=think.forced if think is not None else None)
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
    if item_metrics is not None:
        item_metrics.update(per_item(rows))
    return summarize(rows, samples)


# Per-item means kept for intervals: accuracy, tool calls and generated tokens (the papers'
# claims are about these three).
ITEM_METRICS = {"correct": "correct", "tool_calls": "calls", "tokens": "tokens"}


def per_item(rows: list[dict]) -> dict[str, dict[str, float]]:
    """``{metric: {item id: mean over the item's samples}}`` for :data:`ITEM_METRICS`."""
    by_item = defaultdict(list)
    for r in rows:
        by_item[str(r["id"])].append(r)
    return {metric: {k: float(np.mean([r[key] for r in v])) for k, v in by_item.items()}
            for metric, key in ITEM_METRICS.items()}


def _too_long_row(r: dict) -> dict:
    return {"id": r["id"], "task": r.get("task", ""), "difficulty": r.get("difficulty", ""),
            "category": (r.get("metadata") or {}).get("category", ""), "correct": 0.0,
            "score": 0.0, "calls": 0, "ok_calls": 0, "tokens": 0, "short": 0.0, "reducing": 0,
            "valid_deltas": 0, "delta_sum": 0.0, "too_long": 1}


def _summary(rows: list[dict], samples: int) -> dict:
    # Modes exist only for completions that were generated: a prompt too long to run has none.
    ran = [r for r in rows if not r.get("too_long")]
    short = float(np.mean([r["short"] for r in ran])) if ran else float("nan")
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
        "short_mode_frac": short,
        # AutoTool's thinking rate: the share of completions in think (long) mode.
        "think_rate": 1.0 - short,
        # Accuracy within each mode (nan when no completion took it): whether thinking / calling
        # pays *for this decoding* — sampled, a long tool-using completion can fail far more
        # often than greedily (docs/methods.md, why RL loses held-out accuracy).
        "accuracy_short": _mean_where(ran, 1.0),
        "accuracy_long": _mean_where(ran, 0.0),
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


def _mean_where(rows: list[dict], short: float) -> float:
    """Mean correctness of the completions whose ``short`` flag is ``short``."""
    hits = [r["correct"] for r in rows if r["short"] == short]
    return float(np.mean(hits)) if hits else float("nan")


GROUP_KINDS = ("all", "difficulty", "task", "category")


def summarize(rows: list[dict], samples: int = 1) -> dict:
    """``{"all": {...}, "easy": {...}, "hard": {...}, "<task>": {...}, "<category>": {...}}``
    (a category: e.g. a BFCL one, ``simple_python``, from the record's metadata). Each bucket's
    ``group`` says which of :data:`GROUP_KINDS` it is, so readers need not guess from names; a
    name already taken by an earlier kind is written ``kind:name`` (the synthetic function-calling
    items have a category ``easy`` beside the difficulty ``easy``)."""
    if not rows:
        raise ValueError("evaluation produced no rows (empty split or max_items=0)")
    groups = {"all": ("all", rows)}
    for key in GROUP_KINDS[1:]:
        for value in sorted({r.get(key, "") for r in rows if r.get(key)}):
            name = value if value not in groups else f"{key}:{value}"
            groups[name] = (key, [r for r in rows if r.get(key) == value])
    return {name: {**_summary(g, samples), "group": kind} for name, (kind, g) in groups.items()}


def by_think_mode(results: Mapping[str, dict]) -> dict:
    """One result (eval_<policy>.json) from one per think mode, in evaluation order: the first
    mode's buckets at the top level — what single-mode readers (the pipeline verdict, compare's
    columns) read — and, with several modes, every mode's result under ``"think_modes"``."""
    if not results:
        raise ValueError("no think mode was evaluated")
    out = dict(next(iter(results.values())))
    if len(results) > 1:
        out[BY_MODE_KEY] = dict(results)
    return out


def results_by_mode(result: Mapping[str, Any]) -> dict[str, dict]:
    """The inverse of :func:`by_think_mode`: ``{mode: result}`` (a single-mode result is keyed
    by its ``_meta.think_modes`` entry, ``auto`` for files written before modes existed)."""
    if BY_MODE_KEY in result:
        return dict(result[BY_MODE_KEY])
    mode = ((result.get("_meta") or {}).get("think_modes") or ["auto"])[0]
    return {mode: dict(result)}


def result_lines(name: str, result: Mapping[str, Any]) -> list[str]:
    """What a finished evaluation prints: accuracy, calls, tokens and thinking rate per think
    mode, and per benchmark its accuracy per category."""
    by_mode = results_by_mode(result)
    lines = []
    for mode, res in by_mode.items():
        tag = f"eval[{name}]" + (f"[{mode}]" if len(by_mode) > 1 or mode != "auto" else "")
        a = res["all"]
        lines.append(f"{tag}: accuracy={a['accuracy']:.3f} calls={a['tool_calls']:.2f} "
                     f"tokens={a['tokens']:.1f} think_rate={a.get('think_rate', float('nan')):.2f}")
        for bench, b in (res.get("benchmarks") or {}).items():
            cats = " ".join(f"{k}={v['accuracy']:.3f}" for k, v in b.items()
                            if isinstance(v, Mapping) and v.get("group") == "category")
            lines.append(f"{tag} {bench}: accuracy={b['all']['accuracy']:.3f} "
                         f"({b['all']['items']} items) {cats}".rstrip())
    return lines
