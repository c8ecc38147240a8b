"""The RL loop: rollout → rewards → filters (+ refill) → advantages → K epochs of mini-batch steps.

The recipe (``toolrl_jax.rl.recipes``) supplies every method-specific function; nothing here
branches on a recipe name. Host work (tools, scoring, filters) sits between jitted calls: the
rollout functions, the advantage function and the train step each compile once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from toolrl_jax.rl.filters import group_rows, refill
from toolrl_jax.rl.recipes import RewardInputs
from toolrl_jax.train.experiment import Experiment
from toolrl_jax.train.scoring import Scored, concat_scored, rollout_metrics, score_batch
from toolrl_jax.train.state import Policy
from toolrl_jax.train.steps import build_step, jit_step, rl_loss_fn, token_logp_entropy


def prompt_uid(record: dict) -> int:
    """A stable 31-bit id per task item: the same item gets the same sampling key stream."""
    return int(hashlib.sha256(str(record["id"]).encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def reward_inputs(s: Scored) -> RewardInputs:
    a = s.arrays
    return RewardInputs(
        score_B=s.score_B, format_ok_B=s.has_answer_B.astype(np.float32), length_B=a["length_B"],
        short_mode_B=s.short_mode_B, num_calls_B=a["num_calls_B"],
        delta_entropy_BK=s.delta_entropy_BK, delta_valid_BK=s.delta_valid_BK,
        call_status_BK=a["call_status_BK"], void_turn_B=s.void_turn_B)


@dataclasses.dataclass
class RLTrainer:
    exp: Experiment
    policy: Policy
    tx: object
    schedule: object
    recipe: object  # rl.recipes.Recipe, built by the caller (it also sets beta_long's start)
    ref_params: object = None

    def __post_init__(self):
        cfg = self.exp.cfg
        self.engine = self.exp.engine(self.policy, greedy=False, seed=cfg.train.seed)
        self.seq_len = self.exp.train_seq_len
        self.batch_rows = cfg.rollout.prompts_per_step * cfg.rollout.group_size
        if self.batch_rows % cfg.train.mini_batches:
            raise ValueError(f"rollout batch {self.batch_rows} rows does not split into "
                             f"train.mini_batches={cfg.train.mini_batches}")
        self.mini_rows = self.batch_rows // cfg.train.mini_batches
        micro = cfg.train.micro_batch_size
        self.micro_batches = self.mini_rows // micro if micro else 1
        self._adv = jax.jit(self.recipe.advantages)
        chunk = cfg.train.logit_chunk

        @jax.jit
        def ref_logp(params, tokens, attn):
            logp, _ = token_logp_entropy(self.policy.model(params),
                                         {"tokens_BT": tokens, "attn_mask_BT": attn}, chunk)
            return jnp.pad(logp, ((0, 0), (1, 0)))  # aligned to tokens, like old_logp

        self._ref_logp = ref_logp
        self._step = None

    # ------------------------------------------------------------------ collection
    def collect(self, params, data_iter, step: int):
        """Rollout rounds until the recipe's refill rule is satisfied; returns the train rows."""
        cfg = self.exp.cfg
        g, p = cfg.rollout.group_size, cfg.rollout.prompts_per_step
        rule = self.recipe.refill_rule(p)
        self.engine.base_key = jax.random.fold_in(jax.random.key(cfg.train.seed), step)
        parts, keeps, counts = [], [], {}
        kept, rounds = 0, 0
        while rule.prompts_to_request(kept, rounds) > 0:
            records = next(data_iter)
            trajs = self.engine.generate(params, [r["prompt_ids"] for r in records], g,
                                         prompt_ids=[prompt_uid(r) for r in records])
            rows = [r for r in records for _ in range(g)]
            scored = score_batch(self.exp.syntax, trajs, rows, self.seq_len,
                                 cfg.rollout.max_tool_calls)
            inputs = reward_inputs(scored)
            filt = self.recipe.filter(self.recipe.compute_rewards(inputs), inputs)
            for k, v in filt.counts.items():
                counts[k] = counts.get(k, 0) + v
            parts.append(scored)
            keeps.append(filt.group_keep_P)
            kept += int(filt.group_keep_P.sum())
            rounds += 1
        if len(parts) == 1:
            return parts[0], np.ones(p, np.float32), counts, rounds
        idx, group_weight = refill(np.concatenate(keeps), p)
        return concat_scored(parts, group_rows(idx, g)), group_weight, counts, rounds

    # ------------------------------------------------------------------ one RL iteration
    def iteration(self, state, data_iter, step: int):
        cfg = self.exp.cfg
        t0 = time.perf_counter()
        stats0 = dataclasses.replace(self.engine.stats)
        scored, group_weight, counts, rounds = self.collect(state["params"], data_iter, step)
        t_rollout = time.perf_counter() - t0
        inputs = reward_inputs(scored)
        rewards = self.recipe.compute_rewards(inputs)
        filt = self.recipe.filter(rewards, inputs)
        row_weight = filt.row_weight_B * np.repeat(group_weight, cfg.rollout.group_size)
        for t, rec, reward, score, w in zip(scored.trajectories, scored.records, rewards.reward_B,
                                            scored.score_B, row_weight):
            t.reward = float(reward)  # what rollouts/*.jsonl readers want to see next to the text
            t.metadata.update(id=str(rec["id"]), difficulty=rec.get("difficulty", ""),
                              gold=str(rec["answer"]), score=float(score), trained=bool(w > 0))
        a = scored.arrays
        adv, mask, adv_metrics = self._adv(
            jnp.asarray(rewards.reward_B), jnp.asarray(a["loss_mask_BT"]),
            row_weight_B=jnp.asarray(row_weight), entropy_BT=jnp.asarray(a["entropy_BT"]),
            post_tool_mask_BT=jnp.asarray(a["post_tool_mask_BT"]),
            segment_ids_BT=jnp.asarray(a["segment_ids_BT"]),
            call_reward_BK=(None if rewards.call_reward_BK is None
                            else jnp.asarray(rewards.call_reward_BK)),
            num_calls_B=jnp.asarray(a["num_calls_B"]))
        batch = {
            "tokens_BT": a["tokens_BT"], "attn_mask_BT": a["attn_mask_BT"],
            "loss_mask_BT": np.asarray(mask, np.float32), "old_logp_BT": a["old_logp_BT"],
            "advantages_BT": np.asarray(adv, np.float32),
            "mode_B": scored.short_mode_B.astype(np.float32),
        }
        if self.recipe.needs_reference:
            batch["ref_logp_BT"] = np.asarray(self._ref_logp(self.ref_params, a["tokens_BT"],
                                                             a["attn_mask_BT"]))
        t1 = time.perf_counter()
        state, train_metrics = self._train(state, batch, step)
        t_train = time.perf_counter() - t1
        stats = self.engine.stats
        metrics = rollout_metrics(scored)
        metrics.update({k: float(v) for k, v in counts.items()})
        metrics.update({k: float(s) / max(float(c), 1e-8)
                        for k, (s, c) in jax.device_get(adv_metrics).items()})
        metrics.update(train_metrics)
        generated = int(a["length_B"].sum())
        metrics.update({
            "reward/mean": float(rewards.reward_B.mean()),
            "reward/std": float(rewards.reward_B.std()),
            "filter/rounds": float(rounds),
            "filter/rows_trained": float((row_weight > 0).sum()),
            "time/rollout_s": t_rollout,
            "time/generation_s": stats.generate_s - stats0.generate_s,
            "time/tools_s": stats.tools_s - stats0.tools_s,
            "time/train_s": t_train,
            "perf/rollout_tokens_per_s": generated / max(t_rollout, 1e-9),
        })
        return state, metrics, scored

    def _train(self, state, batch, step):
        cfg = self.exp.cfg
        if self._step is None:
            example = {k: v[: self.mini_rows] for k, v in batch.items()}
            fn = build_step(self.policy, self.tx, rl_loss_fn(self.recipe, cfg.train.logit_chunk),
                            micro_batches=self.micro_batches, update_beta=self.recipe.update_beta,
                            schedule=self.schedule)
            self._step = jit_step(fn, state, self.exp.mesh, example)
        rng = np.random.default_rng([cfg.train.seed, step])
        outs = []  # device arrays: every mini-step is dispatched before any metric is read
        for _ in range(cfg.train.ppo_epochs):
            order = rng.permutation(self.batch_rows)
            for m in range(cfg.train.mini_batches):
                rows = order[m * self.mini_rows:(m + 1) * self.mini_rows]
                state, out = self._step(state, {k: v[rows] for k, v in batch.items()})
                outs.append(out)
        sums: dict[str, float] = {}
        for out in jax.device_get(outs):
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        n = len(outs)
        return state, {k: v / n for k, v in sums.items()}
