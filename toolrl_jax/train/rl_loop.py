"""The RL loop: rollout → scores → rewards → filters (+ refill) → prepare → K epochs of mini-steps.

The recipe (``toolrl_jax.rl.recipes``) supplies every method-specific function; nothing here
branches on a recipe name. Host work (tools, grading, rewards, filters) sits between jitted calls;
the device work after the rollout is two programs, each compiled once: ``prepare`` (advantages,
final loss mask and — with KL on — the reference log-probs, one host↔device round trip) and the
train step. Data between stages is typed: :class:`Scored` → :class:`RewardInputs` →
:class:`TrainBatch`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from toolrl_jax.config import Config
from toolrl_jax.rl.filters import group_rows, refill
from toolrl_jax.rl.recipes import Recipe
from toolrl_jax.rl.rewards import RewardInputs, Rewards
from toolrl_jax.rollout.engine import RolloutEngine
from toolrl_jax.scoring.arrays import bucketed_length, take_rows
from toolrl_jax.scoring.scored import Scored, concat_scored, rollout_metrics, score_batch
from toolrl_jax.train.batch import TrainBatch
from toolrl_jax.train.state import Policy
from toolrl_jax.train.steps import LogitHead, build_step, jit_step, rl_loss_fn, sequence_logp


def prompt_uid(record: dict) -> int:
    """A stable 31-bit id per task item: the same item gets the same sampling key stream."""
    return int(hashlib.sha256(str(record["id"]).encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def reward_inputs(s: Scored) -> RewardInputs:
    """The per-row facts rewards and filters read, from a scored batch."""
    a = s.arrays
    return RewardInputs(
        score_B=s.score_B, correct_B=s.correct_B, format_ok_B=s.has_answer_B.astype(np.float32),
        length_B=a.length_B, short_mode_B=s.short_mode_B, num_calls_B=a.num_calls_B,
        delta_entropy_BK=s.delta_entropy_BK, delta_valid_BK=s.delta_valid_BK,
        call_status_BK=a.call_status_BK, void_turn_B=s.void_turn_B)


def draw_prompts(data_iter, n: int, pending: list) -> tuple[list, list]:
    """Exactly ``n`` records: ``pending`` (left over from this step's earlier rounds) first, then
    whole batches from ``data_iter`` (which yields lists of records). Returns ``(records,
    still_pending)``. Leftovers are dropped at the end of a step, so every step consumes whole
    loader batches and a resumed run sees the same data (the loader's state is checkpointed)."""
    pending = list(pending)
    while len(pending) < n:
        pending.extend(next(data_iter))
    return pending[:n], pending[n:]


@dataclasses.dataclass
class RLTrainer:
    """One RL iteration at a time; built by the experiment layer from ready parts.

    ``engine`` samples the rollout (non-greedy), ``syntax`` says where answers are, ``seq_len``
    is the padded train length (the rollout cache bounds trajectories), ``ref_params`` is the
    frozen reference policy (needed when ``recipe.needs_reference``).
    """

    cfg: Config
    policy: Policy
    tx: object
    schedule: object
    recipe: Recipe
    engine: RolloutEngine
    syntax: object
    mesh: jax.sharding.Mesh
    seq_len: int
    ref_params: object = None

    def __post_init__(self):
        cfg = self.cfg
        self.batch_rows = cfg.rollout.prompts_per_step * cfg.rollout.group_size
        if self.batch_rows % cfg.train.mini_batches:
            raise ValueError(f"rollout batch {self.batch_rows} rows does not split into "
                             f"train.mini_batches={cfg.train.mini_batches}")
        if self.recipe.needs_reference and self.ref_params is None:
            raise ValueError(f"rl.kl_coef={cfg.rl.kl_coef} needs reference params")
        self.mini_rows = self.batch_rows // cfg.train.mini_batches
        micro = cfg.train.micro_batch_size
        self.micro_batches = self.mini_rows // micro if micro else 1
        # Reference / old-logp forward passes over the whole batch, in groups of the step's
        # micro-batch size (one mini-batch at a time when micro-batching is off).
        self.logp_passes = self.batch_rows // (micro or self.mini_rows)
        # Replicated outputs: every host reads the whole batch back to cut its mini-batches.
        self._steps: dict[int, object] = {}  # the jitted step per padded length
        self._prepare = jax.jit(self._prepare_fn,
                                out_shardings=NamedSharding(self.mesh, PartitionSpec()))

    # ------------------------------------------------------------------ collection
    def collect(self, params, data_iter, step: int):
        """Rollout rounds until the recipe's refill rule is satisfied.

        Returns ``(scored, group_weight_P, counts, rounds)``; ``counts`` holds the filters'
        counts and ``sampled/accuracy`` / ``sampled/tool_calls``, means over every row sampled
        this step before any filter or refill — comparable across recipes, unlike the
        ``rollout/*`` metrics of the kept batch (a dynamic-sampling recipe keeps the groups whose
        samples disagree, so its kept batch is more accurate than what the policy sampled).
        """
        cfg = self.cfg
        g, p = cfg.rollout.group_size, cfg.rollout.prompts_per_step
        rule = self.recipe.refill_rule(p)
        self.engine.base_key = jax.random.fold_in(jax.random.key(cfg.train.seed), step)
        parts, keeps, counts = [], [], {}
        kept, rounds, pending = 0, 0, []
        while (want := rule.prompts_to_request(kept, rounds)) > 0:
            records, pending = draw_prompts(data_iter, want, pending)
            trajs = self.engine.generate(params, [r["prompt_ids"] for r in records], g,
                                         prompt_ids=[prompt_uid(r) for r in records],
                                         answer_calls=[r.get("functions", ()) for r in records])
            rows = [r for r in records for _ in range(g)]
            scored = score_batch(self.syntax, trajs, rows, self.seq_len,
                                 cfg.rollout.max_tool_calls)
            inputs = reward_inputs(scored)
            filt = self.recipe.filter(self.recipe.compute_rewards(inputs), inputs)
            for k, v in filt.counts.items():
                counts[k] = counts.get(k, 0) + v
            parts.append(scored)
            keeps.append(filt.group_keep_P)
            kept += int(filt.group_keep_P.sum())
            rounds += 1
        counts["sampled/accuracy"] = float(np.mean(np.concatenate(
            [part.correct_B for part in parts])))
        counts["sampled/tool_calls"] = float(np.mean(np.concatenate(
            [part.arrays.num_calls_B for part in parts])))
        if len(parts) == 1 and len(parts[0].records_B) == p * g:
            return parts[0], np.ones(p, np.float32), counts, rounds
        idx, group_weight = refill(np.concatenate(keeps), p, duplicate=rule.duplicate)
        return concat_scored(parts).take(group_rows(idx, g)), group_weight, counts, rounds

    # ------------------------------------------------------------------ prepare (one jit)
    def _prepare_fn(self, params, ref_params, scored: Scored, reward_B, call_reward_BK,
                    row_weight_B, micro_batch_B=None):
        """Advantages, the final loss mask, the reference log-probs (KL on) and the recomputed
        old log-probs (``rl.recompute_old_logp``): one device program. The two forward passes
        run in the train step's micro-batch groups, so they never need more activation memory
        than the step itself."""
        a = scored.arrays
        adv, mask, adv_metrics = self.recipe.advantages(
            reward_B, a.loss_mask_BT, row_weight_B=row_weight_B,
            entropy_BT=a.entropy_BT, post_tool_mask_BT=a.post_tool_mask_BT,
            segment_ids_BT=a.segment_ids_BT, call_reward_BK=call_reward_BK,
            num_calls_B=a.num_calls_B, micro_batch_B=micro_batch_B)
        passes = dict(micro_batches=self.logp_passes, chunk=LogitHead.from_config(self.cfg))
        ref = None
        if self.recipe.needs_reference:
            ref = sequence_logp(self.policy.model(ref_params), a, **passes)
        old_logp = a.old_logp_BT
        if self.cfg.rl.recompute_old_logp:
            # The trainer's forward, not the sampler's: on-policy ratios are exactly 1 even where
            # cached decode and the full forward round differently (bf16).
            fresh = sequence_logp(self.policy.model(params), a, **passes)
            old_logp = jnp.where(a.loss_mask_BT > 0, jax.lax.stop_gradient(fresh), 0.0)
        batch = TrainBatch(tokens_BT=a.tokens_BT, attn_mask_BT=a.attn_mask_BT,
                           loss_mask_BT=mask.astype(jnp.float32), old_logp_BT=old_logp,
                           advantages_BT=adv.astype(jnp.float32),
                           mode_B=scored.short_mode_B.astype(jnp.float32), ref_logp_BT=ref)
        return batch, adv_metrics

    def prepare(self, params, scored: Scored, rewards: Rewards,
                row_weight_B, micro_batch_B=None) -> tuple[TrainBatch, dict]:
        """The :class:`TrainBatch` (NumPy, ready to split into mini-batches) and the advantage
        metrics as (sum, count) pairs."""
        # Host objects (trajectories, records) stay on the host: the program sees arrays only.
        arrays_only = dataclasses.replace(scored, trajectories_B=None, records_B=None)
        out = self._prepare(params, self.ref_params, arrays_only, rewards.reward_B,
                            rewards.call_reward_BK, np.asarray(row_weight_B, np.float32),
                            micro_batch_B)
        return jax.device_get(out)

    # ------------------------------------------------------------------ one RL iteration
    def iteration(self, state, data_iter, step: int):
        cfg = self.cfg
        t0 = time.perf_counter()
        stats0 = dataclasses.replace(self.engine.stats)
        scored, group_weight, counts, rounds = self.collect(state["params"], data_iter, step)
        if cfg.train.pad_to == "bucket":  # train on the batch's own length, not the longest one
            length = bucketed_length(scored.arrays.longest, cfg.rollout.length_bucket,
                                     self.seq_len)
            scored = dataclasses.replace(scored, arrays=scored.arrays.truncate(length))
        t_rollout = time.perf_counter() - t0
        inputs = reward_inputs(scored)
        rewards = self.recipe.compute_rewards(inputs)
        filt = self.recipe.filter(rewards, inputs)
        row_weight = filt.row_weight_B * np.repeat(group_weight, cfg.rollout.group_size)
        for t, rec, reward, score, w in zip(scored.trajectories_B, scored.records_B,
                                            rewards.reward_B, scored.score_B, row_weight):
            t.reward = float(reward)  # what rollouts/*.jsonl readers want to see next to the text
            t.metadata.update(id=str(rec["id"]), difficulty=rec.get("difficulty", ""),
                              gold=str(rec["answer"]), score=float(score), trained=bool(w > 0))
        batch, adv_metrics = self.prepare(state["params"], scored, rewards, row_weight,
                                          self.micro_batch_ids(step))
        t1 = time.perf_counter()
        state, train_metrics = self._train(state, batch, step)
        t_train = time.perf_counter() - t1
        stats = self.engine.stats
        metrics = rollout_metrics(scored)
        metrics.update({k: float(v) for k, v in counts.items()})
        metrics.update({k: float(s) / max(float(c), 1e-8) for k, (s, c) in adv_metrics.items()})
        metrics.update(train_metrics)
        generated = int(scored.arrays.length_B.sum())
        metrics.update({
            "reward/mean": float(rewards.reward_B.mean()),
            "reward/std": float(rewards.reward_B.std()),
            "filter/rounds": float(rounds),
            "filter/rows_trained": float((row_weight > 0).sum()),
            "time/rollout_s": t_rollout,
            "time/generation_s": stats.generate_s - stats0.generate_s,
            "time/tools_s": stats.tools_s - stats0.tools_s,
            "time/tools_queue_s": stats.tools_queue_s - stats0.tools_queue_s,
            "time/train_s": t_train,
            "perf/rollout_tokens_per_s": generated / max(t_rollout, 1e-9),
        })
        return state, metrics, scored

    def row_orders(self, step: int) -> list[np.ndarray]:
        """The row permutation of each PPO epoch of ``step`` (mini-batch m = its m-th slice)."""
        rng = np.random.default_rng([self.cfg.train.seed, step])
        return [rng.permutation(self.batch_rows) for _ in range(self.cfg.train.ppo_epochs)]

    def micro_batch_ids(self, step: int) -> np.ndarray:
        """int32 ``[B]``: the update micro-batch each row lands in during the first epoch of
        ``step`` (mini-batch m, then ``train/steps.py:_split_micro``'s strided cut: position j of
        the mini-batch goes to micro-batch j mod n) — the population of TAO-RL's per-micro-batch
        shaping statistics (``rl.shaping_scope='micro_batch'``; later epochs reshuffle, and the
        advantages are computed once, as with ppo_epochs = 1 in TAO-RL's config)."""
        order = self.row_orders(step)[0]
        pos = np.arange(self.batch_rows)
        ids = np.empty(self.batch_rows, np.int32)
        ids[order] = (pos // self.mini_rows) * self.micro_batches + (pos % self.mini_rows
                                                                     ) % self.micro_batches
        return ids

    def _train(self, state, batch: TrainBatch, step: int):
        cfg = self.cfg
        length = batch.tokens_BT.shape[1]
        if length not in self._steps:
            example = take_rows(batch, np.arange(self.mini_rows))
            loss = rl_loss_fn(self.recipe, LogitHead.from_config(cfg))
            fn = build_step(self.policy, self.tx, loss,
                            micro_batches=self.micro_batches, update_beta=self.recipe.update_beta,
                            schedule=self.schedule,
                            block_bytes=LogitHead.from_config(cfg).block_bytes())
            self._steps[length] = jit_step(fn, state, self.mesh, example)
        step_fn = self._steps[length]
        outs = []  # device arrays: every mini-step is dispatched before any metric is read
        for order in self.row_orders(step):
            for m in range(cfg.train.mini_batches):
                rows = order[m * self.mini_rows:(m + 1) * self.mini_rows]
                state, out = step_fn(state, take_rows(batch, rows))
                outs.append(out)
        sums: dict[str, float] = {}
        for out in jax.device_get(outs):
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        n = len(outs)
        return state, {k: v / n for k, v in sums.items()}
