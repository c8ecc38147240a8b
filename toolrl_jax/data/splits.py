"""Deterministic, seed-keyed hashing and sampling: train / held-out assignment, coin flips.

Everything here is a pure function of its arguments (no global RNG, no iteration order), so the
same item lands in the same split and gets the same SFT mode on every host, every run, and after
resuming from a checkpoint.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

TRAIN = "train"
HELDOUT = "heldout"
SPLITS = (TRAIN, HELDOUT)


def stable_uniform(*key: object) -> float:
    """A uniform number in [0, 1) determined by ``key`` alone (sha256, not Python's salted hash)."""
    digest = hashlib.sha256("\x1f".join(str(k) for k in key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(item_key: str, split_seed: int, heldout_fraction: float) -> str:
    """The split an item belongs to. ``item_key`` is what must never cross the split boundary
    (a question's text, or an entity whose facts must stay unseen)."""
    return HELDOUT if stable_uniform("split", split_seed, item_key) < heldout_fraction else TRAIN


def rl_only(item_key: str, split_seed: int, fraction: float) -> bool:
    """Whether a train item is kept out of the SFT warm-up and read only as an RL prompt
    (``DataConfig.rl_only_fraction``): RL then samples questions whose answers the warm-up
    never showed, as held-out evaluation does."""
    return stable_uniform("rl-only", split_seed, item_key) < fraction


def stage_key(record: Mapping[str, Any]) -> str:
    """What decides a train record's stage under ``DataConfig.rl_only_fraction``: its
    ``metadata["subject"]`` when the source names one (a lookup item's rare person, whose two
    question templates must not straddle the stages), else its question text. Never the record
    id: a small pool sampled into a larger split repeats questions under fresh ids, and a repeat
    on the SFT side would hand RL a memorised answer."""
    subject = (record.get("metadata") or {}).get("subject")
    return str(subject) if subject else str(record["question"])


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return split


def cycle_sample(rng: random.Random, pool: Sequence[T], k: int) -> list[T]:
    """``k`` draws that walk through shuffled copies of ``pool``: every item once before any item
    twice, so a small pool is covered evenly and a large one has no repeats."""
    if k > 0 and not pool:
        raise ValueError("cannot sample from an empty pool")
    out: list[T] = []
    while len(out) < k:
        order = list(pool)
        rng.shuffle(order)
        out.extend(order[: k - len(out)])
    return out
