"""``report.md`` for a work directory: Markdown tables and PNG plots (matplotlib, Agg).

matplotlib is imported lazily inside :func:`plot_curves`: the training loop imports this module at
start-up, and only pays for matplotlib when it actually draws. We draw on a bare ``Figure`` with an
Agg canvas instead of ``pyplot`` so no global backend is switched and nothing is left open.

The work dir may be a URI (``gs://bucket/run``): a plot is drawn into a local temp file and then
copied to its place; the Markdown goes through ``etils.epath``.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

from toolrl_jax.eval.runner import results_by_mode
from toolrl_jax.experiment import workdir as wd
from toolrl_jax.experiment.metrics import METRICS_FILE, read_metrics

REPORT_FILE = "report.md"
PLOTS_DIR = "plots"


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _ema(values: list[float], smooth: float) -> list[float]:
    """TensorBoard-style exponential smoothing. A NaN stays a gap in the smoothed line too (a NaN
    loss is news, not noise) and does not poison the average after it."""
    out, acc = [], None
    for v in values:
        if math.isfinite(v):
            acc = v if acc is None else smooth * acc + (1 - smooth) * v
            out.append(acc)
        else:
            out.append(math.nan)
    return out


def plot_curves(
    metrics_rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    out_png: str | os.PathLike,
    title: str | None = None,
    *,
    x: str = "step",
    smooth: float = 0.0,
    ncols: int = 3,
) -> list[str]:
    """One subplot per key (y) against ``x``; returns the keys drawn. Keys that no row holds as a
    number are skipped; if none is left nothing is written. Nulls (non-finite values) are gaps.
    ``smooth`` in [0, 1) overlays an exponential moving average on the raw (faded) curve."""
    return plot_series({"": metrics_rows}, keys, out_png, title, x=x, smooth=smooth, ncols=ncols)


def plot_series(
    series: Mapping[str, Sequence[Mapping[str, Any]]],
    keys: Sequence[str],
    out_png: str | os.PathLike,
    title: str | None = None,
    *,
    x: str = "step",
    smooth: float = 0.0,
    ncols: int = 3,
) -> list[str]:
    """Like :func:`plot_curves` with several named runs per subplot (one colour each, legend when
    more than one), e.g. learning curves of every method of a comparison."""
    present = [k for k in keys if any(_is_number(r.get(k)) for rows in series.values() for r in rows)]
    if not present:
        return []
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, len(present)))
    nrows = math.ceil(len(present) / ncols)
    fig = Figure(figsize=(4.0 * ncols, 2.8 * nrows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for i, key in enumerate(present):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for j, (name, rows) in enumerate(series.items()):
            color = f"C{j % 10}"
            pts = [(r[x], r.get(key)) for r in rows if _is_number(r.get(x))]
            xs = [float(px) for px, _ in pts]
            ys = [float(py) if _is_number(py) else math.nan for _, py in pts]
            if 0 < smooth < 1:
                ax.plot(xs, ys, color=color, alpha=0.25, linewidth=1)
                ax.plot(xs, _ema(ys, smooth), color=color, linewidth=1.5, label=name or None)
            else:
                ax.plot(xs, ys, color=color, linewidth=1.5, marker="." if len(xs) < 30 else None,
                        label=name or None)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel(x, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if len(series) > 1 and i == 0:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    _save_png(fig, out_png)
    return present


def _save_png(fig, out_png: str | os.PathLike) -> None:
    """Draws ``fig`` into a local temp file (matplotlib writes local files only) and moves it to
    ``out_png`` (local or URI) whole."""
    fd, tmp = tempfile.mkstemp(suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        wd.upload_file(tmp, out_png)
    finally:
        os.remove(tmp)


def _cell(v: Any, floatfmt: str) -> str:
    if v is None:
        return ""
    if _is_number(v) and not isinstance(v, numbers.Integral):
        return format(float(v), floatfmt)
    # A literal "|" would split the cell and a newline would end the table.
    return str(v).replace("|", "\\|").replace("\n", " ")


def decoding(cfg) -> str:
    """How held-out completions were decoded (``cfg.eval``), for report prose."""
    if cfg.eval.greedy:
        return "greedy"
    return f"sampled at temperature {cfg.rollout.temperature:g}, avg@{cfg.eval.samples}"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], floatfmt: str = ".3f") -> str:
    """A GitHub-Markdown table of ``rows`` restricted to ``columns``. Floats use ``floatfmt``; missing
    or null cells are empty; all-number columns are right-aligned so digits line up."""
    filled = [[r[c] for r in rows if r.get(c) is not None] for c in columns]
    numeric = [bool(vals) and all(_is_number(v) for v in vals) for vals in filled]
    lines = [
        "| " + " | ".join(_cell(c, floatfmt) for c in columns) + " |",
        "|" + "|".join("---:" if num else "---" for num in numeric) + "|",
    ]
    lines += ["| " + " | ".join(_cell(r.get(c), floatfmt) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def summarize_metrics(metrics_rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """One row per key present: ``metric, first, last, min, max, mean`` over its finite values."""
    out = []
    for key in keys:
        vals = [float(r[key]) for r in metrics_rows if _is_number(r.get(key)) and math.isfinite(r[key])]
        if vals:
            out.append(
                {
                    "metric": key,
                    "first": vals[0],
                    "last": vals[-1],
                    "min": min(vals),
                    "max": max(vals),
                    "mean": sum(vals) / len(vals),
                }
            )
    return out


def write_report(
    workdir: str | os.PathLike,
    title: str,
    intro: str = "",
    tables: Sequence[tuple[str, str]] = (),
    plots: Sequence[tuple[str, str]] = (),
    filename: str = REPORT_FILE,
) -> str:
    """Writes ``<workdir>/<filename>`` (default ``report.md``) atomically: title, intro, then
    each ``(heading, markdown_table)``
    and each ``(heading, png path relative to workdir)``. Returns the report's path. A plot whose
    file is missing is named in the text rather than left as a broken image link."""
    parts = [f"# {title}", "", f"_Generated {time.strftime('%Y-%m-%d %H:%M:%S')}._", ""]
    if intro:
        parts += [intro.strip(), ""]
    for heading, table in tables:
        parts += [f"## {heading}", "", table.strip(), ""]
    root = wd.as_path(workdir)
    for heading, png in plots:
        rel = _relative_to(png, root)
        if (root / rel).exists():
            parts += [f"## {heading}", "", f"![{heading}]({rel})", ""]
        else:
            parts += [f"## {heading}", "", f"_(plot missing: `{rel}`)_", ""]
    path = root / filename
    wd.write_text(path, "\n".join(parts))
    return str(path)


def _relative_to(png: str | os.PathLike, root) -> str:
    """``png`` relative to the work dir ``root``, with "/" (Markdown links use "/" everywhere)."""
    text, prefix = os.fspath(png), os.fspath(root).rstrip("/") + "/"
    if text.startswith(prefix):  # a path in the work dir, local or URI
        return text[len(prefix):]
    if os.path.isabs(text) and not wd.is_uri(root):
        text = os.path.relpath(text, os.fspath(root))
    return text.replace(os.sep, "/")


def write_metrics_report(
    workdir: str | os.PathLike,
    title: str,
    keys: Sequence[str],
    *,
    intro: str = "",
    tables: Sequence[tuple[str, str]] = (),
    smooth: float = 0.6,
) -> str:
    """The one call a training loop needs: reads ``metrics.jsonl``, plots ``keys`` to
    ``plots/metrics.png``, adds a summary table after ``tables``, and writes ``report.md``."""
    mpath = wd.as_path(workdir) / METRICS_FILE
    rows = read_metrics(mpath) if mpath.exists() else []
    png = f"{PLOTS_DIR}/metrics.png"
    drawn = plot_curves(rows, keys, wd.as_path(workdir) / png, title=title, smooth=smooth)
    summary = summarize_metrics(rows, keys)
    all_tables = list(tables)
    if summary:
        cols = ["metric", "first", "last", "min", "max", "mean"]
        all_tables.append((f"Metrics over {len(rows)} steps", markdown_table(summary, cols)))
    return write_report(workdir, title, intro, all_tables, [("Training curves", png)] if drawn else [])


# ------------------------------------------------------------------------ evaluation tables
# Columns of the per-benchmark / per-mode tables (a bucket of eval_runner.summarize); avg@k and
# pass@k are added when the evaluation sampled k > 1 completions per item.
EVAL_COLUMNS = ("accuracy", "score", "tool_calls", "tokens", "think_rate")
_AT_K = re.compile(r"^(avg|pass)@\d+$")
_NOT_BUCKETS = ("benchmarks", "think_modes", "_meta")


def _buckets(result: Mapping[str, Any]) -> list[str]:
    """The result's buckets in table order: all, difficulties, categories, then tasks when more
    than one (a single task's bucket repeats "all"). Files written before buckets carried their
    ``group`` are read by name (easy / hard = difficulty, the rest = category)."""
    def kind(name: str) -> str:
        bucket = result[name]
        default = "all" if name == "all" else ("difficulty" if name in ("easy", "hard")
                                               else "category")
        return bucket.get("group", default)

    names = [k for k, v in result.items() if k not in _NOT_BUCKETS and isinstance(v, Mapping)]
    by_kind = {g: [n for n in names if kind(n) == g] for g in ("all", "difficulty", "category",
                                                               "task")}
    tasks = by_kind["task"] if len(by_kind["task"]) > 1 else []
    return by_kind["all"] + by_kind["difficulty"] + by_kind["category"] + tasks


def _cell_of(values: list[Any]) -> Any:
    """One run: the number itself; several (seeds): ``mean ± std`` over the finite ones."""
    nums = [float(v) for v in values if _is_number(v) and math.isfinite(v)]
    if not nums:
        return None
    if len(values) == 1:
        return nums[0]
    mean = sum(nums) / len(nums)
    std = math.sqrt(sum((v - mean) ** 2 for v in nums) / len(nums))
    return f"{mean:.3f} ± {std:.3f}"


def _part(result: Mapping[str, Any], benchmark: str | None) -> Mapping[str, Any]:
    return result.get("benchmarks", {}).get(benchmark, {}) if benchmark else result


def eval_rows(evals: Mapping[str, Sequence[Mapping[str, Any]]],
              benchmark: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and columns of one evaluation table: one row per (policy, think mode, bucket) of
    ``benchmark`` (None: the evaluation split), for ``evals`` = {policy: [eval_<policy>.json of
    each seed]}. The mode column appears when some policy was evaluated in several modes."""
    rows, at_k = [], set()
    several = any(len(results_by_mode(runs[0])) > 1 for runs in evals.values() if runs)
    for policy, runs in evals.items():
        if not runs:
            continue
        per_run = [results_by_mode(r) for r in runs]
        for mode in per_run[0]:
            results = [_part(by_mode.get(mode, {}), benchmark) for by_mode in per_run]
            for bucket in _buckets(results[0]):
                cells = [r.get(bucket, {}) for r in results]
                row = {"policy": policy, "mode": mode, "bucket": bucket,
                       "items": cells[0].get("items")}
                keys = [k for k in cells[0] if _AT_K.match(k)]
                at_k.update(keys)
                for metric in (*EVAL_COLUMNS, *keys):
                    row[metric] = _cell_of([c.get(metric) for c in cells])
                rows.append(row)
    at = sorted(at_k, key=lambda k: (int(k.split("@")[1]), k))
    columns = ["policy", *(["mode"] if several else []), "bucket", "items", "accuracy", *at,
               *EVAL_COLUMNS[1:]]
    return rows, columns


def eval_tables(evals: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[tuple[str, str]]:
    """``(heading, table)`` pairs for report.md / compare.md: the evaluation split per think mode
    and category (when several modes ran or the split has categories: the all / easy / hard
    summary of one mode is the callers' own table) and every benchmark of ``eval.files`` per
    category — accuracy, avg@k / pass@k, score (F1 for QA), tool calls, tokens and thinking
    rate, per policy (cells mean ± std when a policy has several seeds)."""
    first = next((runs[0] for runs in evals.values() if runs), None)
    if first is None:
        return []
    tables = []
    top = results_by_mode(first)
    split = next(iter(top.values()))
    split_buckets = _buckets(split)
    # Only files evaluated: the split's "all" is the first benchmark's (phases.run_eval).
    has_split = not (split.get("benchmarks") and split_buckets == ["all"])
    finer = [b for b in split_buckets if b not in ("all", "easy", "hard")]
    if has_split and (len(top) > 1 or finer):
        rows, columns = eval_rows(evals)
        tables.append(("Evaluation split per think mode and category", markdown_table(rows, columns)))
    names: list[str] = []
    for runs in evals.values():
        for run in runs:
            for res in results_by_mode(run).values():
                names += [n for n in res.get("benchmarks", {}) if n not in names]
    for name in names:
        rows, columns = eval_rows(evals, name)
        tables.append((f"Benchmark `{name}`", markdown_table(rows, columns)))
    return tables
