"""``mode=compare``: one SFT warm-up checkpoint, then the same RL budget and seeds per recipe.

Layout of the work dir::

    sft_policy/, eval_sft.json            the shared starting point and its evaluation
    runs/<recipe>_s<seed>/                one RL run each (metrics.jsonl, checkpoints, rl_policy,
                                          eval_rl.json) — resumable one by one
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

from toolrl_jax.config import Config
from toolrl_jax.experiment.context import Experiment
from toolrl_jax.experiment.metrics import METRICS_FILE, MetricsLogger, read_metrics
from toolrl_jax.experiment.phases import global_resume_step, run_eval, run_rl, run_sft
from toolrl_jax.experiment.report import eval_tables, markdown_table, plot_series, write_report
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
CURVES = ("rollout/accuracy", "rollout/tool_calls", "rollout/entropy/model", "rollout/response_len",
          "rollout/tool/entropy_reducing_frac")


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
    rows = [{"method": "sft (start)", "seeds": 1,
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
    evals: dict[str, list[dict]] = {}
    curves: dict[str, list[list[dict]]] = {}
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
            finally:
                if own is not None:
                    own.close()
            curves.setdefault(recipe, []).append(read_metrics(str(sub.workdir / METRICS_FILE)))
    return write_compare_report(exp, sft_eval, evals, curves)


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


def write_compare_report(exp: Experiment, sft_eval: dict, evals: dict, curves: dict) -> str:
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
        f"evaluation: greedy, {sft_eval['all']['items']} items. Cells: mean ± std over seeds. "
        "acc/100tok = accuracy per 100 generated tokens (accuracy per compute unit); "
        "ΔH<0 share = share of tool calls after which the model's entropy fell.")
    extra = eval_tables({"sft (start)": [sft_eval], **evals})  # per think mode / benchmark
    return write_report(str(exp.workdir), f"Method comparison — {cfg.name}", intro,
                        [("Held-out results", markdown_table(rows, columns)), *extra], plots,
                        filename="compare.md")
