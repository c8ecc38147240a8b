"""``mode=compare``: one SFT warm-up checkpoint, then the same RL budget and seeds per recipe.

Layout of the work dir::

    sft_policy/, eval_sft.json            the shared starting point and its evaluation
    runs/<recipe>_s<seed>/                one RL run each (metrics.jsonl, checkpoints, rl_policy,
                                          eval_rl.json) — resumable one by one
    starts/sft_long/                      with compare.distilled_start: the always-think warm-up
    eval_*_items.json                     per-item results: the intervals' resampling unit
    compare.md, plots/compare_*.png       the tables (mean ± spread over seeds) and curves

Every run gets the same data, prompts per step, group size, steps and seeds; only ``rl.recipe``
(and ``train.seed``) differ, so differences in the table are the recipes' doing — and the tool
settings of a recipe's released code (``config/tools.py:RECIPE_TOOL_PRESETS``: TAO-RL fails a
Python call that wrote to stderr), for which a run gets its own executor over the same tools.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import numpy as np
from etils import epath

from toolrl_jax.config import Config
from toolrl_jax.eval.bootstrap import item_matrix, mean_interval, paired_difference
from toolrl_jax.experiment.claims import SFT_START, applicable, verdict
from toolrl_jax.experiment.context import Experiment
from toolrl_jax.experiment.metrics import METRICS_FILE, MetricsLogger, read_metrics
from toolrl_jax.experiment.phases import (
    global_resume_step,
    read_items,
    run_eval,
    run_rl,
    run_sft,
)
from toolrl_jax.experiment.report import (
    decoding,
    eval_tables,
    markdown_table,
    plot_series,
    write_report,
)
from toolrl_jax.tools import PythonTool, ToolExecutor

# (column, bucket in the eval summary, metric in that bucket)
TABLE = (
    ("acc_all", "all", "accuracy"),
    ("acc_easy", "easy", "accuracy"),
    ("acc_hard", "hard", "accuracy"),
    ("calls/problem", "all", "tool_calls"),
    ("calls_easy", "easy", "tool_calls"),
    ("tokens/problem", "all", "tokens"),
    ("acc/100tok", "all", "acc_per_100_tokens"),
    ("think rate", "all", "think_rate"),
    ("ΔH<0 share", "all", "entropy_reducing_share"),
)
# sampled/accuracy: every row the policy sampled (comparable across recipes); rollout/*: the
# batch trained on, after a recipe's filters (train/rl_loop.py:RLTrainer.collect).
CURVES = ("sampled/accuracy", "rollout/accuracy", "rollout/tool_calls", "rollout/entropy/model",
          "rollout/response_len", "rollout/tool/entropy_reducing_frac")


def _mean_spread(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    return float(np.mean(vals)), float(np.std(vals)) if len(vals) > 1 else 0.0


def _fmt(mean: float, spread: float | None) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f}" if spread is None else f"{mean:.3f} ± {spread:.3f}"


def table_rows(sft_eval: dict, evals: dict[str, list[dict]], tasks: list[str]) -> list[dict]:
    """Rows of the comparison table; SFT is a single checkpoint (no spread)."""
    columns = list(TABLE) + [(f"acc_{t}", t, "accuracy") for t in tasks]
    rows = [{"method": SFT_START, "seeds": 1,
             **{c: _fmt(sft_eval.get(b, {}).get(m, math.nan), None) for c, b, m in columns}}]
    for recipe, runs in evals.items():
        row = {"method": recipe, "seeds": len(runs)}
        for c, b, m in columns:
            row[c] = _fmt(*_mean_spread([r.get(b, {}).get(m, math.nan) for r in runs]))
        rows.append(row)
    return rows


def mean_curves(runs_rows: list[list[dict]], keys) -> list[dict]:
    """Per-step mean over seeds of each key (steps every run has)."""
    by_step = defaultdict(lambda: defaultdict(list))
    for rows in runs_rows:
        for r in rows:
            for k in keys:
                if isinstance(r.get(k), (int, float)):
                    by_step[r["step"]][k].append(r[k])
    return [{"step": s, **{k: float(np.mean(v)) for k, v in d.items()}}
            for s, d in sorted(by_step.items())]


def run_compare(exp: Experiment) -> str:
    cfg = exp.cfg
    logger = MetricsLogger(str(exp.workdir), start_step=global_resume_step(
        dataclasses.replace(exp, cfg=dataclasses.replace(cfg, mode="sft"))),
        loggers=cfg.train.loggers, run_name=cfg.name)
    try:
        sft_dir = run_sft(exp, logger)
    finally:
        logger.close()
    sft_eval = run_eval(exp, str(sft_dir), "sft")
    starts = {}
    if cfg.compare.distilled_start:
        starts["sft_long"] = run_distilled_start(exp)
    evals: dict[str, list[dict]] = {}
    curves: dict[str, list[list[dict]]] = {}
    # Where each evaluation's per-item file is: (work dir, eval name) per run, SFT start first.
    item_files: dict[str, list[tuple]] = {SFT_START: [(exp.workdir, "sft")]}
    for name, (sub_dir, result) in starts.items():
        evals[name] = [result]
        item_files[name] = [(sub_dir, "sft")]
    for recipe in cfg.compare.recipes:
        for seed in cfg.compare.seeds:
            name = f"{recipe}_s{seed}"
            run_cfg = dataclasses.replace(
                cfg, mode="rl", name=f"{cfg.name}/{name}",
                rl=dataclasses.replace(cfg.rl, recipe=recipe),
                train=dataclasses.replace(cfg.train, seed=seed))
            sub = exp.derive(run_cfg, exp.workdir / "runs" / name)
            own = recipe_executor(exp, run_cfg)
            if own is not None:
                sub = dataclasses.replace(sub, executor=own)
            print(f"== {name}", flush=True)
            try:
                with MetricsLogger(str(sub.workdir), start_step=global_resume_step(sub),
                                   loggers=run_cfg.train.loggers, run_name=run_cfg.name) as log:
                    rl_dir = run_rl(sub, log, init_dir=str(sft_dir))
                evals.setdefault(recipe, []).append(run_eval(sub, str(rl_dir), "rl"))
                item_files.setdefault(recipe, []).append((sub.workdir, "rl"))
            finally:
                if own is not None:
                    own.close()
            curves.setdefault(recipe, []).append(read_metrics(str(sub.workdir / METRICS_FILE)))
    return write_compare_report(exp, sft_eval, evals, curves, item_files)


def run_distilled_start(exp: Experiment) -> tuple[epath.Path, dict]:
    """The always-think warm-up (``data.sft_policy="always_long"``, same steps and data) in
    ``starts/sft_long/``, evaluated like the SFT start; resumable like every phase."""
    cfg = exp.cfg
    run_cfg = dataclasses.replace(cfg, mode="sft", name=f"{cfg.name}/sft_long",
                                  data=dataclasses.replace(cfg.data, sft_policy="always_long"))
    sub = exp.derive(run_cfg, exp.workdir / "starts" / "sft_long")
    print("== sft_long (always-think warm-up)", flush=True)
    with MetricsLogger(str(sub.workdir), start_step=global_resume_step(sub),
                       loggers=cfg.train.loggers, run_name=run_cfg.name) as log:
        policy = run_sft(sub, log)
    return sub.workdir, run_eval(sub, str(policy), "sft")


def recipe_executor(exp: Experiment, run_cfg: Config) -> ToolExecutor | None:
    """An executor for one run whose recipe sets the Python tool otherwise than the shared one
    (``tools.python.stderr_fails`` left None: TAO-RL's preset turns it on), over the same tools
    and sandbox; None when the shared executor already fits (or runs no Python)."""
    shared = exp.executor
    python = shared.tools.get("python")
    if not isinstance(python, PythonTool):
        return None
    want = run_cfg.tools.for_recipe(run_cfg.rl.recipe).python.stderr_fails
    if want == python.cfg.stderr_fails:
        return None
    tool = PythonTool(dataclasses.replace(python.cfg, stderr_fails=want), plan=python.plan)
    return ToolExecutor({**shared.tools, "python": tool}, max_workers=run_cfg.tools.max_workers,
                        call_timeout_s=shared.call_timeout_s,
                        max_result_chars=shared.max_result_chars, cache=shared.cache,
                        tool_names=shared.tool_names)


def load_items(item_files: dict[str, list[tuple]], metric: str) -> dict[str, list[dict]]:
    """Per method, each run's per-item ``metric``; methods with a run lacking its items file
    (evaluated before items were written) are left out."""
    out = {}
    for method, files in item_files.items():
        runs = [read_items(d, name, metric) for d, name in files]
        if runs and all(r for r in runs):
            out[method] = runs
    return out


def interval_rows(items: dict[str, list[dict]], replicates: int = 10_000) -> list[dict]:
    """Accuracy per method with its 95 % interval over items and seeds, and its paired
    difference from the SFT start and from GRPO."""
    rows = []
    for method, runs in items.items():
        row = {"method": method, "seeds": len(runs),
               "accuracy [95% CI]": mean_interval(runs, replicates=replicates).as_accuracy()}
        for base in (SFT_START, "grpo"):
            if base != method and base in items:
                diff = paired_difference(runs, items[base], replicates=replicates)
                mark = " ✓" if diff.excludes_zero() else ""
                row[f"Δ vs {base} [95% CI]"] = f"{diff}{mark}"
        rows.append(row)
    return rows


def claim_rows(item_files: dict[str, list[tuple]], replicates: int = 10_000,
               loaded: dict[str, dict] | None = None) -> list[dict]:
    """One row per applicable claim: the paper's number, ours with its interval, the verdict.
    ``loaded``: per-item metrics already read (:func:`load_items` by metric), not read again."""
    rows, cache = [], dict(loaded or {})
    for claim in applicable(set(item_files)):
        if claim.metric not in cache:
            cache[claim.metric] = load_items(item_files, claim.metric)
        items = cache[claim.metric]
        if claim.method not in items or claim.baseline not in items:
            continue
        diff = paired_difference(items[claim.method], items[claim.baseline],
                                 replicates=replicates)
        base = float(item_matrix(items[claim.baseline]).mean())
        ours = f"{diff.estimate / base:+.0%}" if base else "n/a"
        paper = f"{claim.paper_relative:+.0%}" if claim.paper_relative is not None else "—"
        rows.append({"claim": claim.paper, "metric": claim.metric,
                     "method − baseline": f"{claim.method} − {claim.baseline}",
                     "ours (95% CI)": str(diff), "ours relative": ours, "paper relative": paper,
                     "verdict": verdict(claim.direction, diff)})
    return rows


def write_compare_report(exp: Experiment, sft_eval: dict, evals: dict, curves: dict,
                         item_files: dict[str, list[tuple]] | None = None) -> str:
    cfg = exp.cfg
    # Task buckets (summarize's group "task"; files from before groups: by name).
    tasks = [t for t, v in sft_eval.items()
             if isinstance(v, dict) and v.get("group", "task") == "task"
             and t not in ("all", "easy", "hard", "benchmarks", "think_modes", "_meta")]
    rows = table_rows(sft_eval, evals, tasks)
    columns = ["method", "seeds"] + [c for c, _, _ in TABLE] + [f"acc_{t}" for t in tasks]
    series = {recipe: mean_curves(runs, CURVES) for recipe, runs in curves.items()}
    plots = []
    if plot_series(series, list(CURVES), str(exp.workdir / "plots" / "compare_curves.png"),
                   title="RL learning curves (mean over seeds)", smooth=0.5):
        plots.append(("Learning curves per method", "plots/compare_curves.png"))
    intro = (
        f"One SFT warm-up ({cfg.sft.steps} steps), then {cfg.train.steps} RL steps per method × "
        f"seeds {list(cfg.compare.seeds)} ({cfg.rollout.prompts_per_step} prompts × "
        f"{cfg.rollout.group_size} samples per step, same data order per seed). Held-out "
        f"evaluation: {decoding(cfg)}, {sft_eval['all']['items']} items. Cells: mean ± std over "
        "seeds. "
        "acc/100tok = accuracy per 100 generated tokens (accuracy per compute unit); "
        "ΔH<0 share = share of tool calls after which the model's entropy fell.")
    extra = eval_tables({SFT_START: [sft_eval], **evals})  # per think mode / benchmark
    sections = [("Held-out results", markdown_table(rows, columns))]
    correct = load_items(item_files or {}, "correct")
    if len(correct) > 1:
        iv = interval_rows(correct)
        iv_cols = ["method", "seeds", "accuracy [95% CI]"] + [
            c for c in (f"Δ vs {SFT_START} [95% CI]", "Δ vs grpo [95% CI]")
            if any(c in r for r in iv)]
        sections.append((
            "Accuracy with 95 % intervals",
            "Percentile bootstrap (10,000 replicates) over held-out items and seeds: items are "
            "drawn once per replicate for every method (differences are paired), seeds per "
            "method. ✓: the interval excludes zero.\n\n"
            + markdown_table(iv, iv_cols)))
        claims = claim_rows(item_files, loaded={"correct": correct})
        if claims:
            sections.append((
                "Claims, one by one",
                "Verdict from the interval of method − baseline: reproduced (excludes zero on the "
                "claimed side), direction only (estimate on that side, interval includes zero), "
                "not reproduced, refuted (excludes zero on the other side). Relative = "
                "difference / baseline mean.\n\n"
                + markdown_table(claims, list(claims[0]))))
    return write_report(str(exp.workdir), f"Method comparison — {cfg.name}", intro,
                        [*sections, *extra], plots, filename="compare.md")
