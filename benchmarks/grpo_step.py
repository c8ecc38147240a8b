"""One GRPO step, ours against google-tunix 0.1.7's ``GRPOLearner``: phases and the whole step.

    python benchmarks/grpo_step.py [--rounds 3] [--tunix-python /path/to/tunix-venv/bin/python]

The work (the shapes of issue 17): a Qwen2-style model, 4 layers × 256 (4 heads, 2 KV heads,
head dim 64, ffn 1024, vocab 4096, untied head), random weights, fp32, one XLA:CPU device;
8 prompts × G = 8 samples, prompts of 32 ids, exactly 64 new tokens per row (no stop token, no
tool call), temperature 1; GRPO advantages, PPO clip 0.2, AdamW, one update per step (one
mini-batch, no micro-batching). With KL on (coefficient 0.04) both sides run the frozen reference
policy's log-probs before the update; with KL off neither does.

Ours: :meth:`toolrl_jax.train.rl_loop.RLTrainer.iteration` (rollout → scoring → rewards →
``prepare`` → update). Phases: ``rollout`` = collection (generation + scoring), ``ref`` =
``RLTrainer.prepare`` (advantages + the reference log-probs, one program, brought back to the
host), ``update`` = the train step (forward + backward + AdamW, metrics read back). Tunix:
``benchmarks/tunix_grpo_run.py`` in Tunix's own venv (``n/a`` when none is given), a persistent
child process that runs one global step of the real ``GRPOLearner.train`` loop per command and
times ``RLCluster.generate`` / ``get_ref_per_token_logps`` / ``update_actor`` and the whole step.

Method: every contender compiles and runs one untimed step first; then ``--rounds`` rounds, each
running one step of every contender in turn (ours KL on, Tunix KL on, ours KL off, Tunix KL off),
so all of them see the same background load on a shared machine; each time is the median over
rounds. Ratios are ours / Tunix's of those medians.

Final line: ``step_vs_tunix=<x> ref_vs_tunix=<y> update_vs_tunix=<z>``: ``x`` the larger of the
KL-on and KL-off whole-step ratios, ``y`` the reference pass (KL on), ``z`` the larger of the two
update ratios; ``n/a`` without Tunix.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from toolrl_jax.config import (  # noqa: E402
    Config,
    MeshConfig,
    ModelConfig,
    OptimConfig,
    RLConfig,
    RolloutConfig,
    TrainConfig,
)
from toolrl_jax.models.decoder import init_decoder  # noqa: E402
from toolrl_jax.rl.recipes import make_recipe  # noqa: E402
from toolrl_jax.rollout.factory import build_engine  # noqa: E402
from toolrl_jax.sharding import make_mesh  # noqa: E402
from toolrl_jax.testing.fake_tools import NoCalls  # noqa: E402
from toolrl_jax.train.rl_loop import RLTrainer  # noqa: E402
from toolrl_jax.train.state import create_state, make_optimizer  # noqa: E402

PROMPTS, GROUP, PROMPT_LEN, NEW_TOKENS, VOCAB = 8, 8, 32, 64, 4096
KL_COEF, LR = 0.04, 1e-5
PHASES = ("step", "rollout", "ref", "update")


class IdTokenizer:
    """Ids as text. An id ≡ 0 (mod 64) reads as an answer tag holding its parity, so rewards vary
    within a group (about 60 % of rows hold one) and GRPO advantages are not all zero."""

    pad_token_id = 0

    def encode(self, text, add_special_tokens=False):
        return [int(t) for t in text.split()]

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(f"<answer>{i // 64 % 2}</answer>" if i % 64 == 0 else str(int(i))
                        for i in ids)


def model_config() -> ModelConfig:
    return ModelConfig(architecture="qwen2", vocab_size=VOCAB, hidden_size=256,
                       intermediate_size=1024, num_layers=4, num_heads=4, num_kv_heads=2,
                       head_dim=64, qkv_bias=True, tie_embeddings=False, rope_theta=10000.0,
                       max_position=256, dtype="float32", param_dtype="float32")


def run_config(kl: bool, head: str) -> Config:
    return Config(
        mode="rl", model=model_config(), mesh=MeshConfig(data=1),
        optim=OptimConfig(learning_rate=LR, warmup_steps=0),
        rollout=RolloutConfig(prompts_per_step=PROMPTS, group_size=GROUP,
                              max_prompt_len=PROMPT_LEN, max_new_tokens=NEW_TOKENS,
                              max_cache_len=PROMPT_LEN + NEW_TOKENS, segment_len=NEW_TOKENS,
                              max_tool_calls=0, length_bucket=16, temperature=1.0),
        train=TrainConfig(steps=1000, mini_batches=1, logit_head=head),
        rl=RLConfig(recipe="grpo", kl_coef=KL_COEF if kl else 0.0))


def prompt_stream(seed: int):
    """Task records forever: random 32-id prompts whose answer is "1"."""
    rng = np.random.default_rng(seed)
    n = 0
    while True:
        ids = rng.integers(5, VOCAB, size=(PROMPTS, PROMPT_LEN))
        records = []
        for row in ids:
            records.append(dict(id=f"p{n}", task="math", question="", answer="1",
                                difficulty="", prompt_ids=row.tolist()))
            n += 1
        yield records


class Ours:
    """``RLTrainer.iteration`` at the benchmark's shapes; ``step()`` returns the phase times."""

    def __init__(self, kl: bool, head: str):
        cfg = run_config(kl, head)
        self.mesh = make_mesh(cfg.mesh, devices=jax.devices()[:1])
        tx, schedule = make_optimizer(cfg.optim, cfg.train.steps)
        recipe = make_recipe(cfg.rl, group_size=GROUP, max_new_tokens=NEW_TOKENS)
        with jax.set_mesh(self.mesh):
            policy, self.state = create_state(init_decoder(cfg.model, seed=0), tx, self.mesh,
                                              recipe.init_beta_long)
            # The step donates the state: the frozen reference needs buffers of its own.
            ref = jax.tree.map(jnp.copy, self.state["params"]) if kl else None
            engine = build_engine(policy.model, cfg.rollout, IdTokenizer(), NoCalls(),
                                  lambda calls: [], rows=PROMPTS * GROUP, greedy=False, seed=0,
                                  eos_ids=[], stop_sequences=[], mesh=self.mesh)
            engine.warmup(self.state["params"])
        self.trainer = RLTrainer(cfg, policy, tx, schedule, recipe, engine=engine,
                                 syntax=NoCalls(), mesh=self.mesh,
                                 seq_len=PROMPT_LEN + NEW_TOKENS, ref_params=ref)
        self.prepare_s = 0.0
        prepare = self.trainer.prepare

        def timed_prepare(*args, **kwargs):
            t0 = time.perf_counter()
            out = prepare(*args, **kwargs)  # ends in device_get: the program has finished
            self.prepare_s = time.perf_counter() - t0
            return out

        self.trainer.prepare = timed_prepare
        self.data = prompt_stream(seed=1)
        self.n = 0

    def step(self) -> dict:
        with jax.set_mesh(self.mesh):
            t0 = time.perf_counter()
            self.state, metrics, scored = self.trainer.iteration(self.state, self.data, self.n)
            jax.block_until_ready(self.state)
            total = time.perf_counter() - t0
        self.n += 1
        new = int(scored.arrays.length_B.sum())
        if new != PROMPTS * GROUP * NEW_TOKENS:
            raise SystemExit(f"ours generated {new} tokens, expected {PROMPTS * GROUP * NEW_TOKENS}")
        return {"step": total, "rollout": metrics["time/rollout_s"], "ref": self.prepare_s,
                "update": metrics["time/train_s"]}


class Tunix:
    """``tunix_grpo_run.py`` as a child process serving one global step per ``step`` line."""

    def __init__(self, python: str, kl: bool):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tunix_grpo_run.py")
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        env["JAX_PLATFORMS"] = "cpu"
        self.proc = subprocess.Popen(
            [python, script, "--beta", str(KL_COEF if kl else 0.0), "--prompts", str(PROMPTS),
             "--group", str(GROUP), "--prompt-len", str(PROMPT_LEN), "--new-tokens",
             str(NEW_TOKENS), "--vocab", str(VOCAB), "--lr", str(LR)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=env)
        self.info = self._read()

    def _read(self) -> dict:
        """The next JSON line of the child's stdout (its other output is skipped)."""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"tunix_grpo_run.py exited ({self.proc.wait()}); run it by hand "
                                 "to see why")
            if line.startswith("{"):
                return json.loads(line)

    def step(self) -> dict:
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        out = self._read()
        if out["new_tokens"] != PROMPTS * GROUP * NEW_TOKENS:
            raise SystemExit(f"Tunix generated {out['new_tokens']} tokens")
        return {"step": out["step_s"], "rollout": out.get("rollout_s", 0.0),
                "ref": out.get("ref_s", 0.0), "update": out.get("update_s", 0.0)}

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tunix-python", default="",
                    help="python of a venv with google-tunix==0.1.7 (or env TUNIX_PYTHON)")
    ap.add_argument("--head", default="auto", help="train.logit_head for ours: auto/full/chunked")
    args = ap.parse_args()
    python = args.tunix_python or os.environ.get("TUNIX_PYTHON", "")
    have_tunix = bool(python) and os.path.exists(python)

    contenders = {}
    for kl in (True, False):
        tag = "kl_on" if kl else "kl_off"
        contenders[f"ours_{tag}"] = Ours(kl, args.head)
        if have_tunix:
            contenders[f"tunix_{tag}"] = Tunix(python, kl)
    if not have_tunix:
        print("Tunix: n/a (set --tunix-python or TUNIX_PYTHON to a venv with google-tunix==0.1.7)")
    else:
        print(f"Tunix {contenders['tunix_kl_on'].info.get('tunix_version', '?')} "
              f"(jax {contenders['tunix_kl_on'].info.get('jax', '?')}) in {python}")
    try:
        for name, c in contenders.items():  # compile + first-call overheads, untimed
            t0 = time.perf_counter()
            c.step()
            print(f"warm-up {name}: {time.perf_counter() - t0:.1f} s", flush=True)
        times = {name: [] for name in contenders}
        for r in range(args.rounds):
            for name, c in contenders.items():
                times[name].append(c.step())
                t = times[name][-1]
                print(f"round {r + 1}/{args.rounds} {name:13s} " +
                      " ".join(f"{p}={t[p]:.3f}s" for p in PHASES), flush=True)
    finally:
        for c in contenders.values():
            if isinstance(c, Tunix):
                c.close()

    med = {name: {p: statistics.median(t[p] for t in ts) for p in PHASES}
           for name, ts in times.items()}
    print(f"\nmedians over {args.rounds} interleaved rounds (s):")
    print(f"{'contender':14s} " + " ".join(f"{p:>8s}" for p in PHASES))
    for name, m in med.items():
        print(f"{name:14s} " + " ".join(f"{m[p]:8.3f}" for p in PHASES))
    if not have_tunix:
        print("step_vs_tunix=n/a ref_vs_tunix=n/a update_vs_tunix=n/a")
        return
    ratio = {tag: {p: med[f"ours_{tag}"][p] / max(med[f"tunix_{tag}"][p], 1e-9) for p in PHASES}
             for tag in ("kl_on", "kl_off")}
    for tag, r in ratio.items():
        print(f"ours / Tunix, {tag}: " + " ".join(f"{p}={r[p]:.2f}" for p in PHASES
                                                  if not (tag == "kl_off" and p == "ref")))
    step = max(ratio["kl_on"]["step"], ratio["kl_off"]["step"])
    update = max(ratio["kl_on"]["update"], ratio["kl_off"]["update"])
    print(f"step_vs_tunix={step:.2f} ref_vs_tunix={ratio['kl_on']['ref']:.2f} "
          f"update_vs_tunix={update:.2f}")


if __name__ == "__main__":
    main()
