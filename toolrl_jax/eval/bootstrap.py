"""Bootstrap intervals over held-out items and seeds: how sure a comparison of methods can be.

An evaluation gives, per seed, each held-out item's correctness (``eval_<name>_items.json``,
mean over the item's samples). Two sources of noise stand between that and a method's true
accuracy: which items the held-out set happened to contain, and which seeds the runs used. The
interval resamples both, hierarchically: each replicate draws the items with replacement (one
draw shared by every run, so a comparison on the same items stays *paired*: an item hard for
both methods cancels) and, independently per method, the seeds with replacement.

Arrays: a method's results are ``[S, N]`` (seeds × items, the same item order for every run);
replicate weights are counts: ``W`` ``[R, N]`` item counts and ``U`` ``[R, S]`` seed counts,
each row summing to N (S), so a replicate's mean is ``U·A·Wᵀ / (S·N)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

ItemScores = Mapping[str, float]  # item id -> correctness in [0, 1]


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float = 0.95

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"

    def as_accuracy(self) -> str:
        """Unsigned, for a level (not a difference)."""
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def item_matrix(runs: Sequence[ItemScores], ids: Sequence[str] | None = None) -> np.ndarray:
    """``[S, N]`` correctness of S runs over the items every run has (sorted ids, or ``ids``).

    Runs over different item sets would compare different questions: an id missing from one run
    is a clear error, not a silent drop."""
    if not runs:
        raise ValueError("no runs to bootstrap over")
    ids = sorted(runs[0]) if ids is None else list(ids)
    for k, run in enumerate(runs):
        missing = [i for i in ids if i not in run]
        if missing:
            raise ValueError(f"run {k} has no result for {len(missing)} item(s), e.g. "
                             f"{missing[:3]}: runs must be evaluated on the same items")
    return np.asarray([[float(run[i]) for i in ids] for run in runs], np.float64)


def _counts(rng: np.random.Generator, replicates: int, n: int) -> np.ndarray:
    """``[R, n]`` multinomial counts: resampling n things with replacement, R times."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


def _replicate_means(a_SN: np.ndarray, w_RN: np.ndarray, u_RS: np.ndarray) -> np.ndarray:
    """``[R]`` means of ``a`` under item weights ``w`` and seed weights ``u``."""
    s, n = a_SN.shape
    per_seed_RS = w_RN @ a_SN.T  # [R, S]: each seed's item-weighted sum
    return (per_seed_RS * u_RS).sum(axis=1) / (s * n)


def _interval(estimate: float, reps_R: np.ndarray, level: float) -> Interval:
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(reps_R, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), level)


def mean_interval(runs: Sequence[ItemScores], *, replicates: int = 10_000, level: float = 0.95,
                  seed: int = 0) -> Interval:
    """A method's accuracy (mean over seeds and items) with items and seeds resampled."""
    a = item_matrix(runs)
    rng = np.random.default_rng(seed)
    reps = _replicate_means(a, _counts(rng, replicates, a.shape[1]),
                            _counts(rng, replicates, a.shape[0]))
    return _interval(a.mean(), reps, level)


def paired_difference(runs_a: Sequence[ItemScores], runs_b: Sequence[ItemScores], *,
                      replicates: int = 10_000, level: float = 0.95, seed: int = 0) -> Interval:
    """Accuracy of ``a`` minus ``b`` (each a mean over its seeds), on the items both have.

    One item draw per replicate for both sides (paired); seeds drawn per side (a single run,
    e.g. the SFT start, contributes no seed noise)."""
    ids = sorted(set(runs_a[0]) & set(runs_b[0])) if runs_a and runs_b else []
    if not ids:
        raise ValueError("the two methods share no evaluated item")
    a, b = item_matrix(runs_a, ids), item_matrix(runs_b, ids)
    rng = np.random.default_rng(seed)
    w = _counts(rng, replicates, len(ids))
    reps = (_replicate_means(a, w, _counts(rng, replicates, a.shape[0]))
            - _replicate_means(b, w, _counts(rng, replicates, b.shape[0])))
    return _interval(a.mean() - b.mean(), reps, level)
