"""Per-step metrics (``metrics.jsonl``, TensorBoard, W&B) and sampled rollouts of a run's work directory.

Layout inside the work directory (DESIGN §1)::

    metrics.jsonl              one JSON object per step: {"step": …, "time": …, **metrics}
    tensorboard/events.out.*   the same scalars for TensorBoard (written by tensorboardX)
    wandb/                     the Weights & Biases run files, when ``train.loggers`` has "wandb"
    rollouts/step_000120.jsonl sampled trajectories of a step (``toolrl_jax.types`` records)

Process 0 alone writes (on a pod every process computes the same metrics): :class:`MetricsLogger`
and :func:`save_rollouts` do nothing on the other processes.

The work dir may be a URI (``gs://bucket/run``). Objects there cannot be appended to, so the
jsonl, TensorBoard and W&B sinks write into the local scratch dir
(:func:`toolrl_jax.experiment.workdir.scratch_dir`) and the logger copies ``metrics.jsonl``, the
events file and the W&B run id up every ``sync_every_s`` seconds and on flush / close; on start it
fetches ``metrics.jsonl`` and the run id from the work dir, which a restarted job on fresh VMs
needs to resume them.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from etils import epath

from toolrl_jax.experiment import workdir as wd
from toolrl_jax.experiment.tensorboard import TensorBoardWriter
from toolrl_jax.sharding import is_lead_process
from toolrl_jax.types import Trajectory

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"  # wandb.init(dir=workdir) puts its run folders here; we keep the run id here too
WANDB_RUN_ID_FILE = "run_id"
ROLLOUTS_DIR = "rollouts"
LOGGERS = ("jsonl", "tensorboard", "wandb")  # the values of config.train.loggers
NONFINITE_KEY = "nonfinite"  # {"loss": "nan", …}: what the nulls in this line were


def _to_python(value: Any) -> Any:
    """Plain JSON value for a metric: numpy / JAX scalars and 0-d arrays become int or float."""
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)  # numpy / jax 0-d arrays (no jax import needed)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return _to_python(item())
    raise TypeError(f"metric value must be a number, bool or string, got {type(value).__name__}: {value!r}")


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl``. A last line cut off by a killed run is dropped; a bad line anywhere
    else raises ``ValueError`` naming the line, because it means the file was damaged, not cut."""
    rows, _ = _read_lines(path)
    return [row for row, _ in rows]


def _read_lines(path: str | os.PathLike) -> tuple[list[tuple[dict[str, Any], str]], bool]:
    """``([(row, raw_line)], dropped_tail)``; the raw line is kept so rewrites preserve it verbatim.
    ``path`` may be a URI."""
    lines = wd.as_path(path).read_text(encoding="utf-8").split("\n")
    # After the final "\n" split() leaves "", so a complete file's last element is empty; anything
    # else there is a line without its newline, i.e. one the writer never finished.
    tail, lines = lines[-1], lines[:-1]
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not a JSON line ({e})") from e
        if not isinstance(row, dict) or "step" not in row:
            raise ValueError(f"{path}:{lineno}: expected an object with a 'step' key")
        rows.append((row, line))
    return rows, bool(tail.strip())


class _WandbRun:
    """The W&B sink: one run per work directory, resumed the way ``metrics.jsonl`` is.

    ``wandb`` is imported here, lazily: it is an optional extra. ``WANDB_MODE`` (online / offline /
    disabled), ``WANDB_SILENT``, ``WANDB_ENTITY`` and ``WANDB_PROJECT`` are read by wandb as usual;
    without ``WANDB_PROJECT`` the project is the first ``/`` part of ``run_name`` (a comparison's
    sub-runs ``name/recipe_s0`` share their parent's project). The run id is kept in
    ``<workdir>/wandb/run_id`` so a later process finds the run again:

    * ``start_step`` None: continue that run (``resume="allow"``); W&B ignores steps below its last.
    * ``start_step`` s > 0: rewind it to step s-1 (``resume_from="<id>?_step=<s-1>"``), which drops
      what the crashed process logged after its last checkpoint, like the jsonl and TensorBoard
      sinks do. Rewind is a W&B server preview feature: where the server refuses, a new run with the
      same name is started instead (with a warning) and logs from step s on.
    * ``start_step`` 0, or no recorded run: a new run.
    """

    def __init__(self, workdir: str, *, run_name: str, start_step: int | None,
                 config_path: str | os.PathLike | None = None):
        try:
            import wandb
        except ImportError as e:
            raise ImportError(
                "train.loggers has 'wandb' but the wandb package is not installed: "
                "pip install 'toolrl_jax[wandb]'"
            ) from e
        run_dir = os.path.join(workdir, WANDB_DIR)
        os.makedirs(run_dir, exist_ok=True)
        self._id_path = os.path.join(run_dir, WANDB_RUN_ID_FILE)
        previous = None
        if os.path.exists(self._id_path):
            with open(self._id_path, encoding="utf-8") as f:
                previous = f.read().strip() or None
        project = os.environ.get("WANDB_PROJECT") or re.sub(r"[/\\#?%:]", "-", run_name.split("/")[0])[:128]
        config = None
        # config.json is written by Experiment.setup / derive, in the work dir (maybe a URI), not
        # in ``workdir`` here, which is the local dir wandb writes its files into.
        config_file = wd.as_path(config_path or os.path.join(workdir, "config.json"))
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
        kwargs: dict[str, Any] = dict(
            project=project or "toolrl_jax", name=run_name, dir=workdir, config=config, reinit="create_new"
        )
        resume: dict[str, Any] = {}
        if previous and start_step is None:
            resume = {"id": previous, "resume": "allow"}
        elif previous and start_step > 0:
            resume = {"resume_from": f"{previous}?_step={start_step - 1}"}
        try:
            self._run = wandb.init(**kwargs, **resume)
        except Exception as e:
            if not resume:
                raise
            warnings.warn(
                f"W&B could not continue run {previous} ({type(e).__name__}: {e}); starting a new run",
                stacklevel=3,
            )
            self._run = wandb.init(**kwargs)
        if not self._run.disabled:
            tmp = self._id_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(self._run.id + "\n")
            os.replace(tmp, self._id_path)

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        self._run.log(dict(scalars), step=step)

    def close(self, exit_code: int = 0) -> None:
        if self._run is not None:
            self._run.finish(exit_code=exit_code)
            self._run = None


class MetricsLogger:
    """Writes one record per step to the sinks named in ``loggers`` (``config.train.loggers``):

    * ``"jsonl"``: one JSON line per step in ``<workdir>/<filename>``, flushed as written, so a
      SIGKILL loses at most the line in flight. Non-finite numbers are written as ``null`` and
      named under ``"nonfinite"`` in the same line (strict JSON has no NaN; other tools would
      choke on Python's ``NaN`` token). The reports read this file.
    * ``"tensorboard"``: the numbers as scalars under ``<workdir>/tensorboard`` (tensorboardX),
      flushed on each step and on close; NaN / inf are kept, TensorBoard can show them.
    * ``"wandb"``: the numbers to a Weights & Biases run in ``<workdir>/wandb`` named ``run_name``
      (default: the work directory's name); see :class:`_WandbRun`. Needs the ``wandb`` extra.

    ``start_step``: the step the run (re)starts at. Lines already in the file with step >= it are
    dropped (the file is rewritten atomically), so a run resumed from a checkpoint does not log a
    step twice; TensorBoard gets a ``purge_step`` and W&B a rewind to the same effect. ``None``
    appends to what is there (e.g. an evaluation adding lines). In both cases a truncated last
    line from a killed run is removed, so the next line does not get glued onto it.

    ``workdir`` may be a URI: the sinks then write into its local scratch dir and the files are
    copied up every ``sync_every_s`` seconds and on :meth:`flush` / :meth:`close` (see the module
    docstring). ``path`` is the file lines are appended to, ``dest`` the work dir's copy.
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        start_step: int | None = None,
        loggers: Sequence[str] = ("jsonl", "tensorboard"),
        run_name: str | None = None,
        filename: str = METRICS_FILE,
        sync_every_s: float = 30.0,
    ):
        if isinstance(loggers, str):
            raise TypeError(f"loggers must be a sequence of names, not the string {loggers!r}")
        for name in loggers:
            if name not in LOGGERS:
                raise ValueError(f"unknown metrics logger {name!r}; choose from {list(LOGGERS)}")
        self._remote = wd.as_path(workdir)
        self._local = local = wd.scratch_dir(workdir)  # the work dir itself when it is local
        self.path = os.path.join(local, filename)
        self.dest = self._remote / filename
        self._sync_every_s = sync_every_s
        self._last_sync = time.monotonic()
        self._f = None
        self._tb: TensorBoardWriter | None = None
        self._wandb: _WandbRun | None = None
        if not is_lead_process():
            # On a pod every process computes the same metrics; process 0 alone writes them, so
            # metrics.jsonl holds one line per step, not one per host.
            loggers = ()
        try:
            if loggers:
                os.makedirs(local, exist_ok=True)
            if "jsonl" in loggers:
                self._fetch(self.dest, self.path)
                if os.path.exists(self.path):
                    self._repair(start_step)
                self._f = open(self.path, "a", encoding="utf-8")
            if "tensorboard" in loggers:
                self._tb = TensorBoardWriter(os.path.join(local, TENSORBOARD_DIR), start_step=start_step)
            if "wandb" in loggers:
                self._fetch(self._remote / WANDB_DIR / WANDB_RUN_ID_FILE,
                            os.path.join(local, WANDB_DIR, WANDB_RUN_ID_FILE))
                name = run_name or self._remote.name
                self._wandb = _WandbRun(str(local), run_name=name, start_step=start_step,
                                        config_path=self._remote / "config.json")
            self._push()  # a repaired metrics.jsonl replaces the work dir's copy at once
        except BaseException:
            self.close()
            raise

    def _fetch(self, remote: epath.Path, local: str) -> None:
        """With a URI work dir: the work dir's copy of a file is the truth (a restarted job may run
        on fresh VMs, or on a host whose scratch copy is older); none there means none here."""
        if not wd.is_uri(remote):
            return
        if remote.is_file():
            wd.download_file(remote, local)
        elif os.path.exists(local):
            os.remove(local)

    def _push(self) -> None:
        """Flushes the open sinks and copies their files to the work dir."""
        if self._f is not None:
            self._f.flush()
        if self._tb is not None:
            self._tb.flush()
        self._upload()

    def _upload(self) -> None:
        """Copies the local sink files to the work dir (nothing to do when it is local)."""
        self._last_sync = time.monotonic()
        if not wd.is_uri(self._remote):
            return
        if self._f is not None:
            wd.upload_file(self.path, self.dest)
        if self._tb is not None:
            wd.upload_file(self._tb.path,
                           self._remote / TENSORBOARD_DIR / os.path.basename(self._tb.path))
        run_id = os.path.join(self._local, WANDB_DIR, WANDB_RUN_ID_FILE)
        if self._wandb is not None and os.path.exists(run_id):
            wd.upload_file(run_id, self._remote / WANDB_DIR / WANDB_RUN_ID_FILE)

    def _repair(self, start_step: int | None) -> None:
        rows, dropped_tail = _read_lines(self.path)
        keep = [line for row, line in rows if start_step is None or row["step"] < start_step]
        if len(keep) == len(rows) and not dropped_tail:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)  # atomic: a crash here leaves the old file or the new, never half

    def log(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Writes one record for ``step``; returns the row as written to ``metrics.jsonl``. Values:
        numbers (incl. numpy / JAX scalars), bools, strings; only numbers go to TensorBoard / W&B."""
        row: dict[str, Any] = {"step": int(step), "time": round(time.time(), 3)}
        nonfinite: dict[str, str] = {}
        scalars: dict[str, float] = {}
        for key, value in metrics.items():
            if key in row or key == NONFINITE_KEY:
                raise ValueError(f"metric name {key!r} is reserved in {METRICS_FILE}")
            value = _to_python(value)
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                scalars[key] = float(value)
                if isinstance(value, float) and not math.isfinite(value):
                    nonfinite[key] = repr(value)  # "nan", "inf", "-inf"
                    value = None
            row[key] = value
        if nonfinite:
            row[NONFINITE_KEY] = nonfinite
        if self._f is not None:
            self._f.write(json.dumps(row, allow_nan=False) + "\n")
            self._f.flush()
        if scalars:
            if self._tb is not None:
                self._tb.scalars(int(step), scalars)
            if self._wandb is not None:
                self._wandb.log(int(step), scalars)
        if time.monotonic() - self._last_sync >= self._sync_every_s:
            self._push()
        return row

    def flush(self) -> None:
        self._push()

    def close(self, exit_code: int = 0) -> None:
        """Closes every sink, then copies the files up; ``exit_code`` != 0 marks the W&B run
        failed. A second call does nothing."""
        if self._f is not None and not self._f.closed:
            self._f.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.close(exit_code)
        self._upload()
        self._f = self._tb = self._wandb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(exit_code=0 if exc_type is None else 1)


def save_rollouts(
    workdir: str | os.PathLike, step: int, trajectories: Sequence[Trajectory],
    max_rows: int | None = None
) -> str:
    """Writes up to ``max_rows`` trajectories to ``rollouts/step_{step:06d}.jsonl``; returns the path.

    Keeps the *first* rows: the engine emits a prompt's G samples together, so a prefix shows whole
    groups side by side (what differs between a rewarded and an unrewarded sample). Each record is
    token-exact and carries the decoded ``text`` for reading. The file is written whole (atomically
    when local), so a resumed run that saves the same step again replaces it instead of appending
    duplicates. ``workdir`` may be a URI.
    """
    path = wd.as_path(workdir) / ROLLOUTS_DIR / f"step_{int(step):06d}.jsonl"
    if not is_lead_process():
        return str(path)  # process 0 writes the sample for everyone
    rows = list(trajectories) if max_rows is None else list(trajectories)[: max(0, max_rows)]
    # The line format of types.dump_trajectories (which appends to a local file, and objects in a
    # bucket cannot be appended to), so types.load_trajectories reads the file back.
    wd.write_text(path, "".join(json.dumps(t.to_json()) + "\n" for t in rows))
    return str(path)
