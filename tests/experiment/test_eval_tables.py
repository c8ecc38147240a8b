"""report.md and compare.md from hand-written eval_<policy>.json files: per benchmark and category
(accuracy, avg@k / pass@k, score, calls, tokens, thinking rate), per think mode, per seed as
mean ± std; and compare's per-recipe tool executor (TAO-RL's stderr rule)."""

from __future__ import annotations

import dataclasses
import json
import types

import numpy as np
from etils import epath

from toolrl_jax.config import Config, RLConfig
from toolrl_jax.config.tools import PythonToolConfig, ToolsConfig
from toolrl_jax.experiment.compare import recipe_executor, write_compare_report
from toolrl_jax.experiment.pipeline import write_pipeline_report
from toolrl_jax.experiment.report import eval_tables
from toolrl_jax.tools import ParsedCall, PythonTool, ToolExecutor


def _bucket(group, items, acc, score, calls, tokens, think, k=None):
    out = {"group": group, "items": items, "accuracy": acc, "score": score, "tool_calls": calls,
           "tokens": tokens, "think_rate": think, "short_mode_frac": 1 - think,
           "acc_per_100_tokens": acc / tokens * 100, "entropy_reducing_share": 0.5}
    if k:
        out[f"avg@{k}"], out[f"pass@{k}"] = acc, min(1.0, acc + 0.25)
    return out


def _mode_result(shift):
    """One mode's result: the split (all / easy / hard / one task) and a BFCL-like benchmark."""
    return {
        "all": _bucket("all", 4, 0.5 + shift, 0.6, 1.0, 20.0, 0.5),
        "easy": _bucket("difficulty", 2, 1.0, 1.0, 0.5, 10.0, 0.0),
        "hard": _bucket("difficulty", 2, 0.0 + shift, 0.2, 1.5, 30.0, 1.0),
        "arithmetic": _bucket("task", 4, 0.5 + shift, 0.6, 1.0, 20.0, 0.5),
        "benchmarks": {"bfcl": {
            "all": _bucket("all", 3, 2 / 3, 2 / 3, 1.0, 12.0, 1 / 3, k=4),
            "function_call": _bucket("task", 3, 2 / 3, 2 / 3, 1.0, 12.0, 1 / 3, k=4),
            "simple_python": _bucket("category", 2, 1.0 - shift, 1.0, 1.0, 11.0, 0.5, k=4),
            "irrelevance": _bucket("category", 1, 0.0, 0.0, 1.0, 14.0, 0.0, k=4)}},
    }


def _eval(modes=("auto",), shift=0.0):
    per = {m: _mode_result(shift + 0.1 * i) for i, m in enumerate(modes)}
    out = dict(per[modes[0]])
    if len(modes) > 1:
        out["think_modes"] = per
    out["_meta"] = {"think_modes": list(modes), "seconds": 1.0}
    return json.loads(json.dumps(out))  # as read back from eval_<policy>.json


def _table(markdown):
    """Rows of a Markdown table as dicts of cell text."""
    lines = [ln for ln in markdown.strip().splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")), strict=True))
            for ln in lines[2:]]


def test_benchmark_table_per_category_with_k_metrics():
    tables = dict(eval_tables({"sft": [_eval()], "rl": [_eval(shift=0.2)]}))
    assert list(tables) == ["Benchmark `bfcl`"]  # one mode, no split categories: no split table
    rows = _table(tables["Benchmark `bfcl`"])
    assert [(r["policy"], r["bucket"]) for r in rows] == [
        ("sft", "all"), ("sft", "simple_python"), ("sft", "irrelevance"),
        ("rl", "all"), ("rl", "simple_python"), ("rl", "irrelevance")]  # one task: not repeated
    assert "mode" not in rows[0]
    sp = rows[4]
    assert (sp["items"], sp["accuracy"], sp["avg@4"], sp["pass@4"]) == ("2", "0.800", "0.800",
                                                                        "1.000")
    assert (sp["score"], sp["tool_calls"], sp["tokens"], sp["think_rate"]) == (
        "1.000", "1.000", "11.000", "0.500")
    assert rows[2]["accuracy"] == "0.000" and rows[2]["tokens"] == "14.000"


def test_several_modes_give_a_row_per_mode_and_a_split_table():
    tables = dict(eval_tables({"rl": [_eval(("auto", "think", "no_think"))]}))
    assert list(tables) == ["Evaluation split per think mode and category", "Benchmark `bfcl`"]
    split = _table(tables["Evaluation split per think mode and category"])
    assert [(r["mode"], r["bucket"]) for r in split][:3] == [("auto", "all"), ("auto", "easy"),
                                                            ("auto", "hard")]
    assert [r["accuracy"] for r in split if r["bucket"] == "all"] == ["0.500", "0.600", "0.700"]
    bench = _table(tables["Benchmark `bfcl`"])
    assert [r["accuracy"] for r in bench if r["bucket"] == "simple_python"] == [
        "1.000", "0.900", "0.800"]


def test_seeds_are_mean_and_std():
    rows = _table(dict(eval_tables({"grpo": [_eval(), _eval(shift=0.2)]}))["Benchmark `bfcl`"])
    # simple_python accuracy 1.0 and 0.8 over two seeds: mean 0.9, population std 0.1.
    assert rows[1]["bucket"] == "simple_python" and rows[1]["accuracy"] == "0.900 ± 0.100"
    assert rows[1]["tokens"] == "11.000 ± 0.000"


def test_files_from_before_groups_and_modes_still_render():
    old = _eval()
    for res in (old, *old["benchmarks"].values()):
        for v in res.values():
            if isinstance(v, dict):
                v.pop("group", None)
    old.pop("_meta")
    rows = _table(dict(eval_tables({"sft": [old]}))["Benchmark `bfcl`"])
    # Without groups every other bucket reads as a category, the task bucket included.
    assert [r["bucket"] for r in rows] == ["all", "function_call", "simple_python", "irrelevance"]


def _exp(tmp_path, **cfg):
    config = Config(name="t", **cfg)
    return types.SimpleNamespace(cfg=config, workdir=epath.Path(tmp_path))


def test_report_and_compare_contain_the_benchmark_numbers(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "sft/nll": 1.0}) + "\n")
    exp = _exp(tmp_path)
    report = epath.Path(write_pipeline_report(exp, _eval(), _eval(shift=0.2))).read_text()
    assert "## Benchmark `bfcl`" in report
    row = [ln for ln in report.splitlines() if ln.startswith("| rl | simple_python |")]
    assert row == ["| rl | simple_python | 2 | 0.800 | 0.800 | 1.000 | 1.000 | 1.000 | 11.000 "
                   "| 0.500 |"]
    assert "think_rate" in report.split("## Held-out evaluation: SFT vs RL")[1].split("##")[0]
    compare = epath.Path(write_compare_report(
        exp, _eval(("auto", "think")), {"grpo": [_eval(("auto", "think")),
                                                  _eval(("auto", "think"), shift=0.2)]},
        {"grpo": [[], []]})).read_text()
    assert "## Benchmark `bfcl`" in compare
    assert "| grpo | think | simple_python | 2 | 0.800 ± 0.100 |" in compare
    held_out = _table(compare.split("## Held-out results")[1].split("##")[0])
    assert set(held_out[0]) >= {"think rate", "acc_arithmetic"}
    assert "acc_bfcl" not in held_out[0] and "acc_benchmarks" not in held_out[0]


def test_compare_gives_tao_rl_its_own_stderr_rule():
    python = PythonTool(PythonToolConfig(stderr_fails=False))
    shared = ToolExecutor({"python": python})
    try:
        exp = types.SimpleNamespace(executor=shared)
        base = Config(tools=ToolsConfig(enabled=("python",)))
        assert recipe_executor(exp, dataclasses.replace(base, rl=RLConfig(recipe="grpo"))) is None
        own = recipe_executor(exp, dataclasses.replace(base, rl=RLConfig(recipe="tao_rl")))
        assert own is not None and own.tools["python"].cfg.stderr_fails is True
        assert own.tools["python"].plan is python.plan  # the same sandbox, not probed again
        code = {"code": "import sys\nprint(1, file=sys.stderr)"}
        assert own.run_one(_call(code)).status.name == "ERROR"
        assert shared.run_one(_call(code)).status.name == "OK"
        own.close()
        # An explicit setting wins over the preset.
        kept = dataclasses.replace(base, rl=RLConfig(recipe="tao_rl"), tools=ToolsConfig(
            enabled=("python",), python=PythonToolConfig(stderr_fails=False)))
        assert recipe_executor(exp, kept) is None
    finally:
        shared.close()


def _call(arguments):
    return ParsedCall("python", arguments, "", 0, 0)


def _write_items(workdir, name, correct, calls):
    workdir.mkdir(parents=True, exist_ok=True)
    ids = [f"q{i:03d}" for i in range(len(correct))]
    metrics = {"correct": dict(zip(ids, map(float, correct))),
               "tool_calls": dict(zip(ids, map(float, calls))),
               "tokens": dict.fromkeys(ids, 20.0)}
    (workdir / f"eval_{name}_items.json").write_text(json.dumps({"auto": {"split": metrics}}))
    return (workdir, name)


def test_compare_intervals_and_claim_verdicts_from_item_files(tmp_path):
    # 200 items. SFT start: half right. GRPO (3 seeds): 40-44 more items right, same calls —
    # the precondition holds (interval excludes 0). TEPO sparse: GRPO's answers with 30 right
    # items turned wrong (refuted on accuracy) and one call fewer per item (reproduced on
    # calls). TEPO dense: exactly GRPO's answers (estimate 0: not reproduced).
    sft = np.array([0] * 100 + [1] * 100)
    grpo = [sft.copy() for _ in range(3)]
    for k, g in enumerate(grpo):
        g[:40 + 2 * k] = 1
    files = {"sft (start)": [_write_items(tmp_path, "sft", sft, np.full(200, 2))]}
    for recipe, runs, calls in (("grpo", grpo, 2), ("tepo_sparse", [np.where(
            np.arange(200) >= 170, 0, g) for g in grpo], 1), ("tepo_dense", grpo, 2)):
        files[recipe] = [_write_items(tmp_path / f"{recipe}_s{s}", "rl", r, np.full(200, calls))
                         for s, r in enumerate(runs)]
    exp = _exp(tmp_path)
    evals = {r: [_eval()] * 3 for r in ("grpo", "tepo_sparse", "tepo_dense")}
    text = epath.Path(write_compare_report(exp, _eval(), evals, {r: [[]] * 3 for r in evals},
                                           files)).read_text()
    iv = {r["method"]: r for r in _table(text.split("## Accuracy with 95 % intervals")[1]
                                         .split("##")[0])}
    assert iv["sft (start)"]["accuracy [95% CI]"].startswith("0.500 [")
    assert iv["grpo"]["Δ vs sft (start) [95% CI]"].startswith("+0.210 [")
    assert iv["grpo"]["Δ vs sft (start) [95% CI]"].endswith("✓")
    claims = _table(text.split("## Claims, one by one")[1].split("##")[0])
    got = {(c["method − baseline"], c["metric"]): c["verdict"] for c in claims}
    assert got == {("grpo − sft (start)", "correct"): "reproduced",
                   ("tepo_sparse − grpo", "tool_calls"): "reproduced",
                   ("tepo_sparse − grpo", "correct"): "refuted",
                   ("tepo_dense − grpo", "correct"): "not reproduced"}
    calls = next(c for c in claims if c["metric"] == "tool_calls")
    assert (calls["ours relative"], calls["paper relative"]) == ("-50%", "-72%")


def test_pipeline_report_states_the_paired_interval_of_rl_minus_sft(tmp_path):
    # 100 items: RL turns 20 wrong items right and none the other way — every bootstrap
    # replicate is positive; without item files the line is left out.
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "sft/nll": 1.0}) + "\n")
    exp = _exp(tmp_path)
    without = epath.Path(write_pipeline_report(exp, _eval(), _eval(shift=0.2))).read_text()
    assert "95 % interval" not in without
    sft = np.array([0] * 50 + [1] * 50)
    rl = sft.copy()
    rl[:20] = 1
    _write_items(tmp_path, "sft", sft, np.zeros(100))
    _write_items(tmp_path, "rl", rl, np.zeros(100))
    text = epath.Path(write_pipeline_report(exp, _eval(), _eval(shift=0.2))).read_text()
    line = next(ln for ln in text.splitlines() if "95 % interval" in ln)
    low, high = (float(x) for x in line.split(": ")[1].split(" points")[0].split(" to "))
    assert 0 < low < 20 < high <= 30 and line.endswith("excludes zero")


def test_pipeline_verdict_counts_ten_of_two_hundred_items_as_five_points():
    from toolrl_jax.experiment.pipeline import verdict

    sft = {"all": {"accuracy": 90 / 200}, "easy": {"tool_calls": 1.0}}
    rl = {"all": {"accuracy": 100 / 200}, "easy": {"tool_calls": 1.0}}
    assert 100 * (rl["all"]["accuracy"] - sft["all"]["accuracy"]) < 5  # the float trap
    assert "RL beats SFT by ≥ 5 accuracy points" in verdict(sft, rl)
