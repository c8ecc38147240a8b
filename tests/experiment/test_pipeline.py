"""End-to-end runs on tiny overrides: every shipped config runs; an interrupted run resumes."""

import dataclasses
import glob
import json
import os

import numpy as np
import pytest

from toolrl_jax import config as config_lib
from toolrl_jax import main as main_lib
from toolrl_jax.experiment.context import Experiment
from toolrl_jax.experiment.metrics import MetricsLogger, read_metrics
from toolrl_jax.experiment.phases import global_resume_step, run_rl
from toolrl_jax.testing.tiny_run import CONFIG_OVERRIDES, tiny_overrides
from toolrl_jax.train.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
DEMO = os.path.join(ROOT, "configs", "demo.py")


def _argv(path, overrides):
    args = ["--config", path, "--workdir", overrides.pop("workdir")]
    return args + [f"--config.{k}={v}" for k, v in overrides.items()]


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_shipped_config_runs_one_step(tmp_path, path):
    overrides = tiny_overrides(str(tmp_path), **{"sft.steps": 1, "train.steps": 1,
                                                 **CONFIG_OVERRIDES.get(os.path.basename(path), {})})
    mode = config_lib.load(path).mode
    if mode == "eval":  # it evaluates a checkpoint: the tiny run's own SFT export (latest export)
        assert main_lib.run(_argv(path, {**overrides, "mode": "sft"})) == 0
    assert main_lib.run(_argv(path, overrides)) == 0
    if mode in ("pipeline", "rl", "sft"):
        assert read_metrics(str(tmp_path / "metrics.jsonl"))
    if mode == "compare":  # intervals from the per-item files, the distilled start beside
        text = (tmp_path / "compare.md").read_text()
        assert "## Accuracy with 95 % intervals" in text and "## Claims, one by one" in text
        if config_lib.load(path).compare.distilled_start:
            assert (tmp_path / "starts" / "sft_long" / "eval_sft_items.json").is_file()
            assert "| sft_long |" in text.split("## Accuracy with 95 % intervals")[1]
    if mode == "pipeline":
        for name in ("report.md", "plots/rl.png", "sft_policy/model.safetensors",
                     "rl_policy/model.safetensors", "rl_policy/tokenizer.json",
                     "eval_sft.json", "eval_rl.json"):
            assert (tmp_path / name).exists(), name
        assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
        assert glob.glob(str(tmp_path / "checkpoints" / "rl" / "*"))
        assert glob.glob(str(tmp_path / "rollouts" / "*.jsonl"))


NON_TIMING = ("rollout/accuracy", "sampled/accuracy", "reward/mean", "rollout/tool_calls",
              "rollout/response_len", "pg/loss", "train/grad_norm", "policy/entropy")


class _Preempted(Exception):
    """Stands in for the kill signal of a preempted VM."""


def _rl(workdir, steps=4, **extra):
    cfg = config_lib.load(DEMO, tiny_overrides(str(workdir), mode="rl", **{
        "train.steps": steps, "train.checkpoint_every": 2, **extra}))
    exp = Experiment.setup(cfg)
    try:
        with MetricsLogger(str(workdir), start_step=global_resume_step(exp)) as logger:
            return run_rl(exp, logger)
    finally:
        exp.close()


def test_rl_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    _rl(a)
    save = Checkpointer.save

    def killed_after_step_3(self, step, *args, **kwargs):
        save(self, step, *args, **kwargs)
        if step == 3:  # the kill lands after step 3 (its metrics are written, no checkpoint)
            self.close()  # a dead process's writes are over too
            raise _Preempted

    with monkeypatch.context() as m:
        m.setattr(Checkpointer, "save", killed_after_step_3)
        with pytest.raises(_Preempted):
            _rl(b)  # "killed" after step 3; last checkpoint is step 2
    with open(b / "metrics.jsonl") as f:
        assert len(f.readlines()) == 3
    _rl(b)  # the same command again: resumes from step 2, redoes step 3, finishes
    rows_a, rows_b = read_metrics(str(a / "metrics.jsonl")), read_metrics(str(b / "metrics.jsonl"))
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4]
    for ra, rb in zip(rows_a, rows_b):
        for key in NON_TIMING:
            np.testing.assert_allclose(ra[key], rb[key], rtol=1e-5, atol=1e-6, err_msg=key)
    from toolrl_jax.models.safetensors_io import open_tensors

    ta = open_tensors(str(a / "rl_policy" / "model.safetensors"))
    tb = open_tensors(str(b / "rl_policy" / "model.safetensors"))
    for k in ta:
        np.testing.assert_allclose(np.asarray(ta[k]), np.asarray(tb[k]), atol=1e-6)
    cfg = json.loads((b / "config.json").read_text())
    assert cfg["train"]["steps"] == 4


def test_rl_with_fewer_slots_than_rows_matches_one_slot_per_row(tmp_path):
    # Two slots for the step's rows: rows wait for a slot and are prefilled as others finish
    # (continuous batching). A row's samples depend on its ids only, so training is unchanged.
    _rl(tmp_path / "one", steps=2)
    _rl(tmp_path / "two", steps=2, **{"rollout.slots": 2})
    rows_a = read_metrics(str(tmp_path / "one" / "metrics.jsonl"))
    rows_b = read_metrics(str(tmp_path / "two" / "metrics.jsonl"))
    assert len(rows_a) == len(rows_b) == 2
    for ra, rb in zip(rows_a, rows_b):
        for key in NON_TIMING:
            np.testing.assert_allclose(ra[key], rb[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_rollout_slots_must_be_non_negative(tmp_path):
    with pytest.raises(config_lib.ConfigError, match="slots=-1 must be >= 0"):
        config_lib.load(DEMO, tiny_overrides(str(tmp_path), **{"rollout.slots": -1}))


def test_recomputed_old_logp_makes_on_policy_ratios_one_and_reference_kl_zero(tmp_path,
                                                                              monkeypatch):
    # The sampler's log-probs are skewed by +0.5 (as if cached decode rounded differently from
    # the trainer's forward). One update per step, so the policy trained is the one that sampled:
    # with rl.recompute_old_logp the skew is gone (ratio 1); without it the ratio is e^-0.5.
    # At step 1 the frozen reference is that same policy: KL 0. Passes run in 2 micro-batches.
    import toolrl_jax.train.rl_loop as rl_loop

    score = rl_loop.score_batch

    def skewed(*args, **kwargs):
        s = score(*args, **kwargs)
        a = s.arrays
        old = np.where(a.loss_mask_BT > 0, a.old_logp_BT + 0.5, a.old_logp_BT).astype(np.float32)
        return dataclasses.replace(s, arrays=dataclasses.replace(a, old_logp_BT=old))

    monkeypatch.setattr(rl_loop, "score_batch", skewed)
    ratios = {}
    for recompute in (True, False):
        run = tmp_path / str(recompute)
        # GRPO: no group filter, so every row trains even when a random policy's rewards tie
        # (the demo's AutoTool recipe drops zero-variance groups, leaving no ratio to read).
        _rl(run, steps=1, **{"rl.recipe": "grpo", "rl.recompute_old_logp": recompute,
                             "rl.kl_coef": 0.1, "train.micro_batch_size": 2})
        row = read_metrics(str(run / "metrics.jsonl"))[0]
        ratios[recompute] = row["pg/ratio"]
        assert abs(row["kl/ref"]) < 1e-6, row["kl/ref"]
    assert abs(ratios[True] - 1.0) < 1e-6, ratios
    assert abs(ratios[False] - np.exp(-0.5)) < 1e-3, ratios


def test_persistent_compilation_cache_is_written(tmp_path):
    import subprocess
    import sys

    cache = tmp_path / "xla_cache"
    overrides = tiny_overrides(str(tmp_path / "run"), mode="sft", **{
        "sft.steps": 1, "train.compilation_cache_dir": str(cache)})
    argv = _argv(DEMO, overrides)
    out = subprocess.run([sys.executable, "-m", "toolrl_jax.main", *argv], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert cache.is_dir() and any(cache.iterdir()), "no compiled program was cached"
