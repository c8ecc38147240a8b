"""AutoTool warm-up labels from the model's own samples, and the offline data refinement.

``mode=label`` (:mod:`toolrl_jax.experiment.label`) samples k no-think completions per train item
from a policy and grades them with the training verifier; this module turns those grades into one
:class:`ItemLabel` per item and back from the labels file (JSONL, one row per item):

* **label**: ``short`` (no_think) when at least one of the k no-think samples passes (full
  credit), else ``long`` (think) — the model answers it directly or it does not
  (:func:`mode_of`);
* **refinement** (:func:`refine`), two separate drops, each recorded with its reason:
  ``drop_sft`` — half of the too-easy items (all k pass) and half of the too-hard ones (none
  pass) leave the warm-up set, chosen by a hash of (seed, item id), so the choice depends on
  neither file order nor machine; ``drop_rl`` — items whose reward variance over the k sampled
  rounds is below a threshold leave the RL prompts (a group whose rewards barely vary carries
  no group-relative signal).

The SFT warm-up reads a file with ``data.sft_policy="labels"`` / ``data.labels_path``: each
item's mode comes from its label, and only labelled items kept for a stage are trained on in it
(:class:`LabelledSource`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from toolrl_jax.data.modes import Mode
from toolrl_jax.data.records import DataError
from toolrl_jax.data.splits import stable_uniform
from toolrl_jax.data.subsets import IndexSubset, check_stage
from toolrl_jax.jsonl import iter_json_lines

LABELS_FILE = "labels.jsonl"
Stage = Literal["sft", "rl"]
# Why refinement dropped an item (the ``drop_sft`` / ``drop_rl`` values; "" = kept).
TOO_EASY, TOO_HARD, LOW_VARIANCE, NOT_SAMPLED = "too_easy", "too_hard", "low_variance", "not_sampled"
_REASONS = ("", TOO_EASY, TOO_HARD, LOW_VARIANCE, NOT_SAMPLED)


@dataclasses.dataclass(frozen=True)
class ItemLabel:
    """One train item's label and refinement verdicts (one row of the labels file)."""

    id: str
    mode: Mode  # short iff some no-think sample passed (mode_of(passes))
    passes: int = 0  # samples with full credit (the verifier's ``correct``)
    rewards: tuple[float, ...] = ()  # verifier score of each sample, in sampling order
    task: str = ""
    difficulty: str = ""
    category: str = ""
    drop_sft: str = ""  # "" = in the warm-up set; else why not (TOO_EASY, TOO_HARD, NOT_SAMPLED)
    drop_rl: str = ""  # "" = among the RL prompts; else why not (LOW_VARIANCE, NOT_SAMPLED)

    @property
    def samples(self) -> int:
        """k: samples drawn (0 when the prompt was too long to sample)."""
        return len(self.rewards)

    @property
    def variance(self) -> float:
        """Population variance of the rewards over the k rounds (0 without samples)."""
        return float(np.var(np.asarray(self.rewards, np.float64))) if self.rewards else 0.0

    def keep(self, stage: Stage) -> bool:
        return not (self.drop_sft if stage == "sft" else self.drop_rl)

    def to_json(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["rewards"] = list(self.rewards)
        row["samples"], row["variance"] = self.samples, self.variance  # for readers; derived
        return row


def mode_of(passes: int) -> Mode:
    """AutoTool's label: short (no_think) if any no-think sample passed, else long (think)."""
    if passes < 0:
        raise ValueError(f"passes={passes} must be >= 0")
    return "short" if passes > 0 else "long"


def label_item(record: Mapping[str, Any], rewards: Sequence[float],
               correct: Sequence[float]) -> ItemLabel:
    """The label of one task record from its k samples' verifier ``score`` and ``correct``."""
    if len(rewards) != len(correct):
        raise ValueError(f"{len(rewards)} rewards but {len(correct)} verdicts")
    passes = int(sum(1 for c in correct if c >= 1.0))
    meta = record.get("metadata") or {}
    return ItemLabel(id=str(record["id"]), mode=mode_of(passes), passes=passes,
                     rewards=tuple(float(r) for r in rewards), task=record.get("task", ""),
                     difficulty=record.get("difficulty", ""),
                     category=meta.get("category", "") if isinstance(meta, Mapping) else "")


# ------------------------------------------------------------------------------- refinement


def extreme_drops(labels: Sequence[ItemLabel], *, fraction: float, seed: int) -> dict[str, str]:
    """Item id -> TOO_EASY / TOO_HARD for the dropped share of each extreme.

    Too easy: every one of its k > 0 samples passed; too hard: none did. From each group
    ``floor(fraction * n)`` items go — those with the smallest ``stable_uniform("refine", seed,
    id)`` — so the choice is a function of the seed and the ids alone."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction} must be in [0, 1]")
    easy = [lab for lab in labels if lab.samples and lab.passes == lab.samples]
    hard = [lab for lab in labels if lab.samples and lab.passes == 0]
    out: dict[str, str] = {}
    for group, reason in ((easy, TOO_EASY), (hard, TOO_HARD)):
        ranked = sorted(group, key=lambda lab: (stable_uniform("refine", seed, lab.id), lab.id))
        for lab in ranked[: math.floor(fraction * len(group))]:
            out[lab.id] = reason
    return out


def variance_drops(labels: Sequence[ItemLabel], min_variance: float) -> set[str]:
    """Ids of sampled items whose reward variance over their k rounds is below ``min_variance``
    (0 keeps every item: a variance is never negative)."""
    if min_variance < 0:
        raise ValueError(f"min_variance={min_variance} must be >= 0")
    return {lab.id for lab in labels if lab.samples and lab.variance < min_variance}


def refine(labels: Sequence[ItemLabel], *, drop_fraction: float = 0.5, min_variance: float = 0.0,
           seed: int = 0) -> list[ItemLabel]:
    """``labels`` (same order) with ``drop_sft`` / ``drop_rl`` set: the extremes' drop for the
    warm-up (:func:`extreme_drops`), the variance threshold for RL (:func:`variance_drops`);
    items never sampled (prompt too long) are dropped from both."""
    ids = [lab.id for lab in labels]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"item id {dup!r} is labelled twice")
    extremes = extreme_drops(labels, fraction=drop_fraction, seed=seed)
    low = variance_drops(labels, min_variance)
    out = []
    for lab in labels:
        if not lab.samples:
            out.append(dataclasses.replace(lab, drop_sft=NOT_SAMPLED, drop_rl=NOT_SAMPLED))
        else:
            out.append(dataclasses.replace(lab, drop_sft=extremes.get(lab.id, ""),
                                           drop_rl=LOW_VARIANCE if lab.id in low else ""))
    return out


def summary(labels: Sequence[ItemLabel]) -> dict[str, Any]:
    """Counts for logs and tests: items, short / long, kept per stage, drops per reason."""
    out: dict[str, Any] = {"items": len(labels),
                           "short": sum(lab.mode == "short" for lab in labels),
                           "long": sum(lab.mode == "long" for lab in labels),
                           "keep_sft": sum(lab.keep("sft") for lab in labels),
                           "keep_rl": sum(lab.keep("rl") for lab in labels)}
    for reason in _REASONS[1:]:
        out[f"drop_sft/{reason}"] = sum(lab.drop_sft == reason for lab in labels)
        out[f"drop_rl/{reason}"] = sum(lab.drop_rl == reason for lab in labels)
    return out


# -------------------------------------------------------------------------------- the file


def labels_jsonl(labels: Iterable[ItemLabel]) -> str:
    """The labels file's text: one JSON row per item."""
    return "".join(json.dumps(lab.to_json(), ensure_ascii=False) + "\n" for lab in labels)


def _from_row(row: Any) -> ItemLabel:
    if not isinstance(row, dict):
        raise ValueError("a row must be a JSON object")
    for key in ("id", "mode"):
        if key not in row:
            raise ValueError(f"missing required key '{key}'")
    if not isinstance(row["id"], str) or not row["id"]:
        raise ValueError("'id' must be a non-empty string")
    if row["mode"] not in ("short", "long"):
        raise ValueError(f"'mode' must be 'short' or 'long', got {row['mode']!r}")
    rewards = row.get("rewards", [])
    if not isinstance(rewards, list) or not all(isinstance(r, (int, float)) for r in rewards):
        raise ValueError("'rewards' must be a list of numbers")
    passes = row.get("passes", 0)
    if not isinstance(passes, int) or not 0 <= passes <= len(rewards):
        raise ValueError(f"'passes'={passes!r} must be an integer in [0, len(rewards)]")
    for key in ("drop_sft", "drop_rl"):
        if row.get(key, "") not in _REASONS:
            raise ValueError(f"'{key}'={row[key]!r} must be one of {list(_REASONS)}")
    text = {k: row.get(k, "") for k in ("task", "difficulty", "category")}
    for k, v in text.items():
        if not isinstance(v, str):
            raise ValueError(f"'{k}' must be a string")
    return ItemLabel(id=row["id"], mode=row["mode"], passes=passes,
                     rewards=tuple(float(r) for r in rewards), drop_sft=row.get("drop_sft", ""),
                     drop_rl=row.get("drop_rl", ""), **text)


def read_labels(path: str) -> dict[str, ItemLabel]:
    """Item id -> label from a labels file (local or a URI). A bad row raises
    :class:`DataError` naming file, line and field; an id labelled twice is an error too."""
    out: dict[str, ItemLabel] = {}
    try:
        for lineno, row in iter_json_lines(path):
            try:
                lab = _from_row(row)
            except ValueError as e:
                raise DataError(f"{path}:{lineno}: {e}") from e
            if lab.id in out:
                raise DataError(f"{path}:{lineno}: item {lab.id!r} is labelled twice")
            out[lab.id] = lab
    except FileNotFoundError as e:
        raise DataError(f"{path}: labels file not found (data.labels_path; write it with "
                        "--config.mode=label)") from e
    except ValueError as e:
        if isinstance(e, DataError):
            raise
        raise DataError(str(e)) from e
    if not out:
        raise DataError(f"{path}: the labels file holds no rows")
    return out


class LabelledSource(IndexSubset):
    """Random access to the records of ``source`` whose label keeps them for ``stage`` (a grain
    ``RandomAccessDataSource``). Unlabelled records are left out: the labelled subset is the
    training set. Its ``repr`` names the inner source and a digest of the kept ids, so a saved
    iterator state refuses a different selection."""

    def __init__(self, source: Any, labels: Mapping[str, ItemLabel], stage: Stage):
        check_stage(stage)
        kept = []
        for i in range(len(source)):
            lab = labels.get(str(source[i]["id"]))
            if lab is not None and lab.keep(stage):
                kept.append(i)
        if not kept:
            raise DataError(f"no record of {source!r} is labelled and kept for {stage} "
                            f"({len(labels)} labels): do the labels belong to this data?")
        ids = "\x1f".join(str(source[i]["id"]) for i in kept)
        digest = hashlib.sha256(ids.encode("utf-8")).hexdigest()[:12]
        super().__init__(source, kept, f"stage={stage}, kept={len(kept)}, ids={digest}")
