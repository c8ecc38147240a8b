"""A fixed subset of a record source, chosen once by index (a grain ``RandomAccessDataSource``).

Subclasses decide which indices to keep (:class:`~toolrl_jax.data.pipeline.StageSubset` by a
hash of each record's stage key, :class:`~toolrl_jax.data.labels.LabelledSource` by its label)
and how the choice is named: the ``repr`` is what a saved iterator state is checked against, so
it must change whenever the kept records can.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STAGES = ("sft", "rl")  # the two readers of the train split: the warm-up and RL's prompts


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected 'sft' or 'rl'")
    return stage


class IndexSubset:
    """The records of ``source`` at ``index`` (in that order); ``describe`` completes the repr."""

    def __init__(self, source: Any, index: Sequence[int], describe: str):
        self._source, self._index, self._describe = source, list(index), describe

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._source[self._index[index]]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._source!r}, {self._describe})"
