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
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

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
