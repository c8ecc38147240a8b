"""``mode=pipeline``: SFT warm-up → RL → held-out evaluation of both → ``report.md``.

The report compares the SFT policy with the RL policy on the held-out split per difficulty
(accuracy, tool calls per problem, tokens per problem) and plots the training curves.
"""

from __future__ import annotations

from toolrl_jax.eval.bootstrap import Interval, paired_difference
from toolrl_jax.experiment.context import Experiment
from toolrl_jax.experiment.metrics import METRICS_FILE, MetricsLogger, read_metrics
from toolrl_jax.experiment.phases import (
    RL_KEYS,
    SFT_KEYS,
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
    plot_curves,
    write_report,
)

COMPARE_METRICS = ("accuracy", "tool_calls", "tokens", "acc_per_100_tokens", "think_rate",
                   "tool_success", "entropy_reducing_share")


def comparison_rows(evals: dict[str, dict]) -> list[dict]:
    """One row per (policy, bucket): the metrics the report compares."""
    rows = []
    for policy, result in evals.items():
        for bucket in ("all", "easy", "hard"):
            if bucket in result:
                rows.append({"policy": policy, "bucket": bucket,
                             **{m: result[bucket].get(m) for m in COMPARE_METRICS}})
    return rows


def verdict(sft: dict, rl: dict, diff: Interval | None = None) -> str:
    """The issue's bar, stated with numbers: +5 accuracy points, or −30% easy tool calls at
    accuracy within 1 point. ``diff``: the paired bootstrap interval of RL − SFT accuracy over
    the held-out items (how far another run of the same config may land)."""
    # Rounded: 100 × (0.50 − 0.45) is 4.999…96 in floating point, and 10 of 200 items is +5.
    d_acc = round(100 * (rl["all"]["accuracy"] - sft["all"]["accuracy"]), 9)
    lines = [f"- accuracy: SFT {100 * sft['all']['accuracy']:.1f}% → RL "
             f"{100 * rl['all']['accuracy']:.1f}% ({d_acc:+.1f} points)"]
    if diff is not None:
        lines.append(f"- RL − SFT, 95 % interval over the held-out items (paired bootstrap): "
                     f"{100 * diff.low:+.1f} to {100 * diff.high:+.1f} points"
                     + (" — excludes zero" if diff.excludes_zero() else " — includes zero"))
    if "easy" in sft and "easy" in rl:
        s_calls, r_calls = sft["easy"]["tool_calls"], rl["easy"]["tool_calls"]
        cut = (1 - r_calls / s_calls) * 100 if s_calls > 0 else (-100.0 if r_calls > 0 else 0.0)
        if s_calls == 0:
            change = "up from none" if r_calls > 0 else "none either way"
        else:
            change = f"{cut:.0f}% fewer" if cut >= 0 else f"{-cut:.0f}% more"
        lines.append(f"- tool calls per easy problem: SFT {s_calls:.2f} → RL {r_calls:.2f} "
                     f"({change})")
    else:
        cut = 0.0
    if d_acc >= 5:
        lines.append("- result: RL beats SFT by ≥ 5 accuracy points")
    elif cut >= 30 and abs(d_acc) <= 1:
        lines.append("- result: RL cuts easy-item tool calls by ≥ 30% at equal accuracy")
    else:
        lines.append("- result: neither bar (+5 points, or −30% easy tool calls at ±1 point) met")
    return "\n".join(lines)


def _item_interval(exp: Experiment) -> Interval | None:
    """RL − SFT accuracy on the held-out items, when both evaluations wrote their items."""
    sft, rl = read_items(exp.workdir, "sft"), read_items(exp.workdir, "rl")
    return paired_difference([rl], [sft]) if sft and rl else None


def write_pipeline_report(exp: Experiment, sft_eval: dict, rl_eval: dict) -> str:
    cfg = exp.cfg
    rows = read_metrics(str(exp.workdir / METRICS_FILE))
    sft_rows = [r for r in rows if r["step"] <= cfg.sft.steps]
    rl_rows = [r for r in rows if r["step"] > cfg.sft.steps]
    plots = []
    if plot_curves(sft_rows, list(SFT_KEYS), str(exp.workdir / "plots" / "sft.png"),
                   title="SFT warm-up"):
        plots.append(("SFT warm-up", "plots/sft.png"))
    rl_keys = list(RL_KEYS) + ["rollout/tool_calls_easy", "rollout/tool_calls_hard",
                               "rollout/entropy/model", "rollout/tool/entropy_reducing_frac"]
    if plot_curves(rl_rows, rl_keys, str(exp.workdir / "plots" / "rl.png"),
                   title=f"RL ({cfg.rl.recipe})", smooth=0.6):
        plots.append((f"RL ({cfg.rl.recipe})", "plots/rl.png"))
    table = markdown_table(comparison_rows({"sft": sft_eval, "rl": rl_eval}),
                           ["policy", "bucket", *COMPARE_METRICS])
    meta = rl_eval.get("_meta", {})
    intro = (f"Run `{cfg.name}`: SFT warm-up ({cfg.sft.steps} steps) then RL with recipe "
             f"`{cfg.rl.recipe}` ({cfg.train.steps} steps, {cfg.rollout.prompts_per_step} prompts"
             f" × {cfg.rollout.group_size} samples), evaluated ({decoding(cfg)}) on "
             f"{rl_eval['all']['items']} held-out items ({meta.get('seconds', 0):.0f} s).\n\n"
             + verdict(sft_eval, rl_eval, _item_interval(exp)))
    # Per think mode and per eval.files benchmark (per category), when there are any.
    extra = eval_tables({"sft": [sft_eval], "rl": [rl_eval]})
    return write_report(str(exp.workdir), f"toolrl_jax report — {cfg.name}", intro,
                        [("Held-out evaluation: SFT vs RL", table), *extra], plots)


def run_pipeline(exp: Experiment) -> str:
    logger = MetricsLogger(str(exp.workdir), start_step=global_resume_step(exp),
                           loggers=exp.cfg.train.loggers, run_name=exp.cfg.name)
    try:
        sft_dir = run_sft(exp, logger)
        rl_dir = run_rl(exp, logger, init_dir=str(sft_dir), step_offset=exp.cfg.sft.steps)
    finally:
        logger.close()
    sft_eval = run_eval(exp, str(sft_dir), "sft")
    rl_eval = run_eval(exp, str(rl_dir), "rl")
    path = write_pipeline_report(exp, sft_eval, rl_eval)
    print(f"report: {path}", flush=True)
    return path
