"""google-tunix's ``GRPOLearner``, one global step per command: the Tunix side of
``benchmarks/grpo_step.py``.

Runs in Tunix's own virtualenv (its pinned jax/flax need not match this project's) and imports
nothing from ``toolrl_jax``. It builds Tunix's ``Qwen2`` (randomly initialised, fp32), a reference
copy with the same weights, an ``RLCluster`` with every role on one one-device mesh, the vanilla
rollout engine and AdamW, and a ``GRPOLearner`` (G = ``--group``, one update per step:
``num_iterations=1``, mini-batch = the whole batch, ``beta`` = ``--beta``; ``--beta 0`` turns the
reference pass off). Then it serves: each line ``step`` on stdin runs ONE global step of the real
``GRPOLearner.train`` loop (rollout → rewards/advantages → reference log-probs → update) and
prints one JSON line::

    {"step_s": x, "rollout_s": r, "ref_s": f, "update_s": u, "new_tokens": n}

``step_s`` runs from the moment the learner receives the batch (the data iterator returns) to the
end of the global step (updated params ready); the phases are the learner's own calls timed
around ``RLCluster.generate``, ``RLCluster.get_ref_per_token_logps`` and
``RLCluster.update_actor``, each ending in ``block_until_ready`` of its result / the actor's
params. ``quit`` (or EOF) ends the loop. The parent sends one untimed ``step`` first (compiles).
Reading commands this way lets the parent interleave Tunix's steps with its own in one run
without paying Tunix's compilation per round.

The tokenizer's EOS id is ``vocab`` (never sampled), so every row gets exactly ``--new-tokens``
tokens. The reward is a deterministic function of the completion (share of even ids), which is
enough to give non-zero group-relative advantages.

    <tunix python> benchmarks/tunix_grpo_run.py [--beta 0.04] [--prompts 8 --group 8 ...]

It prints ``ready`` (a JSON line with the versions) once built. It forces ``JAX_PLATFORMS=cpu``
unless the caller set it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _die(msg: str, code: int = 2) -> None:
    print(f"tunix_grpo_run: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


try:
    import jax
    import numpy as np
    import optax
    from flax import nnx
except ImportError as e:  # pragma: no cover - environment problem
    _die(f"cannot import jax/flax/optax ({e}); run this with the Tunix venv's python")

try:
    from tunix.models.qwen2 import model as qwen2_lib
    from tunix.rl import rl_cluster as rl_cluster_lib
    from tunix.rl.grpo import grpo_learner
    from tunix.rl.rollout import base_rollout
except ImportError as e:  # pragma: no cover - environment problem
    _die(f"cannot import tunix ({e}); run this with the Tunix venv's python "
         "(python3 -m venv /path && /path/bin/pip install google-tunix==0.1.7)")


class IdTokenizer:
    """Text is space-separated integer ids; no BOS, pad 0, EOS = ``vocab`` (never sampled)."""

    def __init__(self, vocab: int):
        self.vocab = vocab

    def encode(self, text: str, **_: object) -> list[int]:
        return [int(t) for t in text.split()]

    def decode(self, ids, **_: object) -> str:
        return " ".join(str(int(t)) for t in ids)

    def bos_id(self):
        return None

    def eos_id(self) -> int:
        return self.vocab

    def pad_id(self) -> int:
        return 0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--beta", type=float, default=0.04, help="KL coefficient; 0 = no reference")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def build_model(a: argparse.Namespace):
    cfg = qwen2_lib.ModelConfig(
        num_layers=a.layers, vocab_size=a.vocab, embed_dim=a.width, hidden_dim=a.ffn,
        num_heads=a.heads, head_dim=a.head_dim, num_kv_heads=a.kv_heads, rope_theta=10000.0,
        norm_eps=1e-6, use_tied_embedding=False, dtype=np.float32, param_dtype=np.float32)
    return qwen2_lib.Qwen2(cfg, rngs=nnx.Rngs(params=a.seed))


def _ready(tree) -> None:
    jax.block_until_ready([x for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)])


def main(argv=None) -> None:
    a = parse_args(argv)
    from importlib.metadata import version

    # Auto axes: Tunix's models are written for GSPMD-style (not explicit-sharding) meshes.
    mesh = jax.make_mesh((1, 1), ("fsdp", "tp"), devices=jax.devices()[:1],
                         axis_types=(jax.sharding.AxisType.Auto,) * 2)
    actor, reference = build_model(a), build_model(a)  # same seed: same weights, two copies
    roles = rl_cluster_lib.Role
    cluster_cfg = rl_cluster_lib.ClusterConfig(
        role_to_mesh={roles.ACTOR: mesh, roles.REFERENCE: mesh, roles.ROLLOUT: mesh},
        rollout_engine="vanilla",
        offload_to_cpu=False,
        training_config=rl_cluster_lib.RLTrainingConfig(
            actor_optimizer=optax.adamw(a.lr), eval_every_n_steps=10**9, max_steps=10**9,
            pbar_description=None),
        rollout_config=base_rollout.RolloutConfig(
            max_tokens_to_generate=a.new_tokens, max_prompt_length=a.prompt_len,
            kv_cache_size=a.prompt_len + a.new_tokens, temperature=1.0, top_p=1.0, top_k=None),
    )
    cluster = rl_cluster_lib.RLCluster(actor=actor, reference=reference if a.beta else None,
                                       tokenizer=IdTokenizer(a.vocab), cluster_config=cluster_cfg)

    def reward(prompts, completions, **_):
        return [float(np.mean([int(t) % 2 == 0 for t in c.split()] or [0.0]))
                for c in completions]

    learner = grpo_learner.GRPOLearner(
        rl_cluster=cluster,
        algo_config=grpo_learner.GRPOConfig(num_generations=a.group, num_iterations=1,
                                            beta=a.beta),
        reward_fns=reward)

    phases: dict[str, float] = {}
    t_start = [0.0]
    new_tokens = [0]

    def timed(name, fn, ready):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            ready(out)
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0
            return out
        return wrapper

    def count_tokens(out):
        new_tokens[0] += sum(len(t) for t in out.tokens)

    cluster.generate = timed("rollout_s", cluster.generate, count_tokens)
    cluster.get_ref_per_token_logps = timed("ref_s", cluster.get_ref_per_token_logps, _ready)
    cluster.update_actor = timed(
        "update_s", cluster.update_actor,
        lambda _: _ready(nnx.state(cluster.actor_trainer.model, nnx.Param)))
    run_global_step = learner._run_global_step  # noqa: SLF001 - the learner's one global step

    def global_step(*args, **kwargs):
        run_global_step(*args, **kwargs)
        _ready(nnx.state(cluster.actor_trainer.model, nnx.Param))
        out = {"step_s": round(time.perf_counter() - t_start[0], 4),
               **{k: round(v, 4) for k, v in phases.items()}, "new_tokens": new_tokens[0]}
        print(json.dumps(out), flush=True)

    learner._run_global_step = global_step  # noqa: SLF001

    rng = np.random.default_rng(a.seed)

    def batches():
        """One batch of prompts per ``step`` command; the step's clock starts on its arrival."""
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "quit":
                return
            if cmd != "step":
                continue
            phases.clear()
            new_tokens[0] = 0
            ids = rng.integers(5, a.vocab, size=(a.prompts, a.prompt_len))
            t_start[0] = time.perf_counter()
            # An array, not a list: the learner repeats every leaf G times along axis 0.
            yield {"prompts": np.array([" ".join(map(str, row)) for row in ids])}

    print(json.dumps({"ready": True, "tunix_version": version("google-tunix"),
                      "jax": jax.__version__, "beta": a.beta}), flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        learner.train(batches())


if __name__ == "__main__":
    main()
