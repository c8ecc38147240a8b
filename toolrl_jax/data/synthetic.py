"""The synthetic tool-task mix: arithmetic + multi-hop lookup, per split, from a DataConfig.

Pure functions of the config: the same config gives the same items, ids and trajectories on every
host. Train items are sampled with ``seed``, held-out items with ``seed + 1``; which items may
appear in which split is fixed by ``split_seed`` alone (see :mod:`toolrl_jax.data.splits`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolrl_jax.config.data import DataConfig
from toolrl_jax.data import arithmetic, function_calling, lookup
from toolrl_jax.data.splits import HELDOUT, TRAIN, check_split


def world_from_config(cfg: DataConfig) -> lookup.World:
    return lookup.make_world(
        cfg.world_seed,
        num_countries=cfg.num_countries,
        num_cities=cfg.num_cities,
        num_famous=cfg.num_famous,
        num_rare=cfg.num_rare,
    )


def _counts(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as possible, earlier parts taking the remainder."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def synthetic_split(cfg: DataConfig, split: str) -> list[dict[str, Any]]:
    """All records of ``split`` ("train" / "heldout"), tasks concatenated in ``cfg.tasks`` order."""
    check_split(split)
    total = cfg.num_train if split == TRAIN else cfg.num_heldout
    seed = cfg.seed if split == TRAIN else cfg.seed + 1
    common = dict(seed=seed, hard_fraction=cfg.hard_fraction, split_seed=cfg.split_seed,
                  heldout_fraction=cfg.heldout_fraction)
    records: list[dict[str, Any]] = []
    for task, num in zip(cfg.tasks, _counts(total, len(cfg.tasks)), strict=True):
        if task == arithmetic.TASK:
            records += arithmetic.generate(split, num, tool=cfg.arithmetic_tool, **common)
        elif task == lookup.TASK:
            records += lookup.generate(world_from_config(cfg), split, num, **common)
        elif task == function_calling.TASK:
            records += function_calling.generate(split, num, **common)
        else:
            raise ValueError(f"unknown synthetic task {task!r}")
    return records


def synthetic_splits(cfg: DataConfig) -> dict[str, list[dict[str, Any]]]:
    return {split: synthetic_split(cfg, split) for split in (TRAIN, HELDOUT)}


def write_corpus(cfg: DataConfig, path: str | Path) -> Path:
    """Writes the lookup world's passages as JSONL ``{"id", "title", "text"}`` for the search
    tool to index; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for passage in world_from_config(cfg).passages():
            f.write(json.dumps(passage, ensure_ascii=False) + "\n")
    return path
