"""Name -> function tables for the RL components a config chooses by name.

A config names its components (``rl.reward``, ``rl.filters``, ``rl.advantage``, ``rl.shaping``,
``rl.loss_agg``, ``rl.kl_estimator``, ``rl.autotool_entropy_gate``). The name is declared exactly
once, by the decorator on the function that implements it; the config validates names against
these tables (``config/rl.py``) and :func:`toolrl_jax.rl.recipes.make_recipe` looks each name up
once and binds the function, so nothing branches on a component name at call time.

Adding a component is one registered function in its home module, plus its test::

    # toolrl_jax/rl/rewards.py
    @REWARDS.register("my_reward")
    def _my_reward(cfg, x: RewardInputs) -> tuple[np.ndarray, np.ndarray | None]:
        return x.need("score_B", "reward 'my_reward'") * 2.0, None

Tables and their entries (``B`` rows, ``T`` tokens, ``K`` call slots, ``P = B / G`` groups;
``cfg`` is the resolved ``RLConfig``, whose knobs the entry reads; masks are > 0 on trained
tokens, the value being the token's weight):

* ``REWARDS`` (``rl/rewards.py``): ``(cfg, inputs: RewardInputs) -> (base_B, call_reward_BK |
  None)``, host NumPy float32.
* ``FILTERS`` (``rl/filters.py``): a :class:`Filter`, ``fn(reward_B, inputs, group_size) -> drop``,
  ``[B]`` bool, or ``[P]`` bool when ``drops_groups``; host NumPy.
* ``ADVANTAGES`` (``rl/advantages.py``): ``(cfg, reward_B, mask_BT, *, group_size, call_reward_BK,
  num_calls_B, segment_ids_BT) -> adv_BT``, 0 off the mask; jnp, jit-able.
* ``SHAPERS`` (``rl/shaping.py``): ``(adv_BT, entropy_BT, post_tool_mask_BT, mask_BT, cfg,
  stat_group_B=None) -> adv_BT``; jnp, entropies stop-gradient; ``stat_group_B`` [B] = the row
  populations of batch statistics (``rl.shaping_scope``).
* ``LOSS_AGGS`` (``rl/losses.py``): ``(loss_BT, mask_BT, constant) -> (sum, denominator)``.
* ``KL_ESTIMATORS`` (``rl/losses.py``): ``d_BT -> kl_BT`` with ``d = log π_ref − log π``.
* ``AUTOTOOL_GATES`` (``rl/losses.py``): ``(entropy_BT, h_B) -> gate entropy`` broadcastable to
  ``[B, T]``, stop-gradient (``h_B``: the rows' mean entropies).

Optional inputs an entry needs (``None`` when absent) make it raise with their name.

A table imports its home module the first time it is read, so the entries are always there and
importing this module stays cheap: it never imports ``toolrl_jax.config`` (which imports this
module to validate names) nor JAX.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

if TYPE_CHECKING:
    import jax

    from toolrl_jax.rl.rewards import RewardInputs

E = TypeVar("E")
F = TypeVar("F", bound=Callable[..., Any])

#: ``cfg`` below: the resolved ``toolrl_jax.config.rl.RLConfig`` (not imported here, see above).
RLConfigLike = Any

RewardFn = Callable[[RLConfigLike, "RewardInputs"], "tuple[np.ndarray, np.ndarray | None]"]
FilterFn = Callable[[np.ndarray, "RewardInputs", int], np.ndarray]
AdvantageFn = Callable[..., "jax.Array"]
ShaperFn = Callable[..., "jax.Array"]  # (adv, entropy, post_tool, mask, cfg, stat_group_B=None)
AggFn = Callable[["jax.Array", "jax.Array", float], "tuple[jax.Array, jax.Array]"]
KLFn = Callable[["jax.Array"], "jax.Array"]
GateFn = Callable[["jax.Array", "jax.Array"], "jax.Array"]


@dataclasses.dataclass(frozen=True)
class Filter:
    """A filter entry. ``fn(reward_B, inputs, group_size)`` returns the drop mask: ``[P]`` bool
    when ``drops_groups`` (whole groups without learning signal; the loop oversamples and refills
    them), else ``[B]`` bool (rows, which keep their place in the group baseline)."""

    fn: FilterFn
    drops_groups: bool


class Table(Generic[E]):
    """Name -> entry for one kind of component, filled by ``@TABLE.register(name)`` in ``home``.

    ``table[name]`` returns the entry or raises ``ValueError`` naming the kind, the bad name and the
    choices; ``name in table``, ``sorted(table)`` and :meth:`names` list what is registered.
    """

    def __init__(self, kind: str, home: str, entry_type: Callable[..., E] | None = None):
        self.kind = kind  # for messages: "unknown <kind> 'x'"
        self.home = home  # module whose import registers the built-in entries
        self._entry_type = entry_type  # wraps fn + register()'s keywords (FILTERS: Filter)
        self._entries: dict[str, E] = {}
        self._loaded = False

    def register(self, name: str, **meta: Any) -> Callable[[F], F]:
        """Decorator: ``@TABLE.register("name", **meta)`` adds ``fn`` under a new, unique name
        and returns ``fn`` unchanged. ``meta`` goes to the table's entry type (FILTERS:
        ``drops_groups``)."""

        def add(fn: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            if self._entry_type is None and meta:
                raise TypeError(f"{self.kind} entries take no metadata, got {sorted(meta)}")
            self._entries[name] = self._entry_type(fn, **meta) if self._entry_type else fn
            return fn

        return add

    def unregister(self, name: str) -> None:
        """Removes an entry (temporary registrations, e.g. in tests)."""
        del self._entries[name]

    def __getitem__(self, name: str) -> E:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {self.names()}") from None

    def resolve(self, name_or_entry: str | E) -> E:
        """A name is looked up; an entry (already looked up) is returned as is."""
        return self[name_or_entry] if isinstance(name_or_entry, str) else name_or_entry

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Table({self.kind!r}, {self.names()})"

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # before the import: the home module registers into this table
        try:
            importlib.import_module(self.home)
        except BaseException:
            self._loaded = False
            raise


REWARDS: Table[RewardFn] = Table("reward", "toolrl_jax.rl.rewards")
FILTERS: Table[Filter] = Table("filter", "toolrl_jax.rl.filters", Filter)
ADVANTAGES: Table[AdvantageFn] = Table("advantage", "toolrl_jax.rl.advantages")
SHAPERS: Table[ShaperFn] = Table("shaping", "toolrl_jax.rl.shaping")
LOSS_AGGS: Table[AggFn] = Table("loss aggregation", "toolrl_jax.rl.losses")
KL_ESTIMATORS: Table[KLFn] = Table("KL estimator", "toolrl_jax.rl.losses")
AUTOTOOL_GATES: Table[GateFn] = Table("AutoTool entropy gate", "toolrl_jax.rl.losses")

#: Every table, e.g. to check that the config exposes each one.
TABLES: tuple[Table, ...] = (REWARDS, FILTERS, ADVANTAGES, SHAPERS, LOSS_AGGS, KL_ESTIMATORS,
                             AUTOTOOL_GATES)


def group_filters() -> list[str]:
    """Names of the filters that drop whole groups (any of them on: the loop refills)."""
    return [name for name in FILTERS if FILTERS[name].drops_groups]
