"""The RL train step's input: a typed, static-shape batch (a registered dataclass pytree).

Built once per RL iteration by :meth:`toolrl_jax.train.rl_loop.RLTrainer.prepare` from the scored
rollout; mini-batches are row selections of it (``jax.tree.map(lambda x: x[rows], batch)``).
All per-token arrays are aligned to ``tokens_BT``: ``old_logp_BT[b, t]`` is the sampler's log-prob
of ``tokens_BT[b, t]``; the logits at position t−1 score token t.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainBatch:
    """``[B, T]`` per token, ``[B]`` per row; NumPy on the host, traced arrays inside the step."""

    tokens_BT: np.ndarray  # int32; prompt + response, right-padded
    attn_mask_BT: np.ndarray  # int32; 1 on real tokens
    loss_mask_BT: np.ndarray  # float32; token weight: 1 on trained sampled tokens, 0 elsewhere
    old_logp_BT: np.ndarray  # float32; sampler log-prob of token t
    advantages_BT: np.ndarray  # float32; per-token advantage (0 off the mask)
    mode_B: np.ndarray  # float32; AutoTool mode, 1 = short, 0 = long
    ref_logp_BT: np.ndarray | None = None  # float32; reference policy log-prob (KL on), else None
