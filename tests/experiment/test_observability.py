"""Observability: TensorBoard (tensorboardX) and W&B sinks, metrics.jsonl, rollouts, progress, report."""

import glob
import io
import json
import math
import os
import re
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from toolrl_jax.experiment import metrics as M
from toolrl_jax.experiment import progress as P
from toolrl_jax.experiment import report as R
from toolrl_jax.experiment import tensorboard as TB
from toolrl_jax.types import StopReason, ToolCallRecord, ToolStatus, Trajectory, load_trajectories

# ------------------------------------------------------------------------------ TensorBoard writer


def test_writer_round_trip(tmp_path):
    with TB.TensorBoardWriter(str(tmp_path)) as w:
        w.scalars(0, {"reward": 0.5, "calls": 2})
        w.scalars(10, {"reward": 0.1, "huge": 1e40, "bad": float("nan"), "neg": -3.0})
        w.scalars(2**40 + 3, {"reward": 0.25})  # a multi-byte varint step
        path = w.path
    assert os.path.basename(path).startswith("events.out.tfevents.")
    got = TB.read_scalars(str(tmp_path))  # directory form
    expected = [(0, "reward"), (0, "calls"), (10, "reward"), (10, "huge"), (10, "bad"), (10, "neg")]
    assert [(s, t) for s, t, _ in got] == [*expected, (2**40 + 3, "reward")]
    assert got[0][2] == 0.5 and got[1][2] == 2.0 and got[5][2] == -3.0 and got[6][2] == 0.25
    assert got[2][2] == pytest.approx(0.1, rel=1e-7) and got[2][2] != 0.1  # float32 on the wire
    assert got[3][2] == math.inf and math.isnan(got[4][2])
    assert repr(TB.read_scalars(path)) == repr(got)  # file form (repr: nan != nan)
    head = TB.read_events(path)[0]
    assert head.file_version == "brain.Event:2"  # what TensorBoard requires of a file's first record
    with pytest.raises(TypeError, match="'name'"):
        TB.TensorBoardWriter(str(tmp_path / "x")).scalars(1, {"name": "abc"})


def test_reader_skips_truncated_tail_and_rejects_corruption(tmp_path):
    w = TB.TensorBoardWriter(str(tmp_path), start_step=3)
    w.scalars(3, {"a": 1.0})
    w.scalars(4, {"a": 2.0})
    w.close()
    data = open(w.path, "rb").read()
    assert TB.read_scalars(w.path) == [(3, "a", 1.0), (4, "a", 2.0)]
    cut = tmp_path / "cut" / "events.out.tfevents.0.x"
    cut.parent.mkdir()
    cut.write_bytes(data[:-5])  # killed mid-record
    assert TB.read_scalars(str(cut)) == [(3, "a", 1.0)]
    bad = bytearray(data)
    bad[-6] ^= 0xFF  # flip a byte inside the last record's payload
    cut.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="CRC mismatch"):
        TB.read_scalars(str(cut))


def test_two_writers_same_second_use_distinct_files(tmp_path):
    a, b = TB.TensorBoardWriter(str(tmp_path)), TB.TensorBoardWriter(str(tmp_path))
    assert a.path != b.path
    a.scalars(1, {"x": 1.0})
    b.scalars(1, {"x": 2.0})
    a.close()
    b.close()
    assert TB.read_scalars(a.path) == [(1, "x", 1.0)] and TB.read_scalars(b.path) == [(1, "x", 2.0)]


# ---------------------------------------------------------------------------------- metrics.jsonl


def test_metrics_logger_lines_nonfinite_and_tensorboard(tmp_path):
    wd = str(tmp_path)
    with M.MetricsLogger(wd) as log:
        log.log(1, {"loss": np.float32(0.5), "calls": np.int64(3), "phase": "rl", "ok": np.bool_(True)})
        row = log.log(2, {"loss": float("nan"), "grad_norm": float("inf")})
        with pytest.raises(ValueError, match="reserved"):
            log.log(3, {"step": 1})
        with pytest.raises(TypeError, match="must be a number"):
            log.log(3, {"x": [1, 2]})
    assert row["nonfinite"] == {"loss": "nan", "grad_norm": "inf"}
    lines = open(os.path.join(wd, "metrics.jsonl")).read().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(x) for x in lines)  # strict JSON: no NaN tokens
    assert "NaN" not in lines[1] and "Infinity" not in lines[1]
    assert first["step"] == 1 and first["loss"] == 0.5 and first["calls"] == 3 and first["phase"] == "rl"
    assert first["ok"] is True and abs(first["time"] - time.time()) < 60
    assert second["loss"] is None and second["grad_norm"] is None
    tb = TB.read_scalars(os.path.join(wd, "tensorboard"))
    assert (1, "loss", 0.5) in tb and (1, "calls", 3.0) in tb
    assert not any(t in ("phase", "ok") for _, t, _ in tb)  # only numbers are mirrored
    assert [(s, t) for s, t, v in tb if s == 2 and math.isnan(v)] == [(2, "loss")]


def test_read_metrics_truncated_tail_and_corrupt_middle(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 0, "a": 1}\n{"step": 1, "a": 2}\n{"step": 2, "a"')
    assert M.read_metrics(str(p)) == [{"step": 0, "a": 1}, {"step": 1, "a": 2}]
    p.write_text('{"step": 0}\n{"step": 1, "a"\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        M.read_metrics(str(p))


def test_resume_drops_future_steps_and_truncated_tail(tmp_path):
    wd = str(tmp_path)
    with M.MetricsLogger(wd, loggers=("jsonl",)) as log:
        for s in range(10):
            log.log(s, {"x": s})
    path = os.path.join(wd, "metrics.jsonl")
    with open(path, "a") as f:
        f.write('{"step": 10, "x"')  # the line in flight at SIGKILL
    with M.MetricsLogger(wd, loggers=("jsonl",), start_step=6) as log:  # last checkpoint at step 6
        log.log(6, {"x": 60})
    assert [(r["step"], r["x"]) for r in M.read_metrics(path)] == [*((s, s) for s in range(6)), (6, 60)]
    assert not os.path.exists(path + ".tmp")
    with open(path, "a") as f:
        f.write('{"step": 7')
    with M.MetricsLogger(wd, loggers=("jsonl",)) as log:  # plain append still repairs the tail
        log.log(7, {"x": 70})
    assert [r["step"] for r in M.read_metrics(path)] == [0, 1, 2, 3, 4, 5, 6, 7]


def test_resume_writes_tensorboard_session_start(tmp_path):
    with M.MetricsLogger(str(tmp_path)) as log:
        for s in range(8):
            log.log(s, {"x": s})
    with M.MetricsLogger(str(tmp_path), start_step=6) as log:  # last checkpoint at step 6
        log.log(6, {"x": 60})
    first, second = sorted(glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*")))
    assert TB.read_scalars(first) == [(s, "x", float(s)) for s in range(8)]
    events = TB.read_events(second)
    # SessionLog.START at 6 tells TensorBoard to drop the first run's points with step >= 6
    (start,) = [e for e in events if e.HasField("session_log")]
    assert start.step == 6 and start.session_log.status == start.session_log.START
    assert TB.read_scalars(second) == [(6, "x", 60.0)]


def test_logger_choices_and_missing_wandb(tmp_path, monkeypatch):
    choices = "unknown metrics logger 'nope'; choose from ['jsonl', 'tensorboard', 'wandb']"
    with pytest.raises(ValueError, match=re.escape(choices)):
        M.MetricsLogger(str(tmp_path), loggers=("jsonl", "nope"))
    with M.MetricsLogger(str(tmp_path / "tb"), loggers=("tensorboard",)) as log:
        log.log(1, {"x": 1.5, "s": "text"})
    assert not (tmp_path / "tb" / M.METRICS_FILE).exists()
    assert TB.read_scalars(str(tmp_path / "tb" / "tensorboard")) == [(1, "x", 1.5)]
    monkeypatch.setitem(sys.modules, "wandb", None)  # "import wandb" now raises ImportError
    message = ("train.loggers has 'wandb' but the wandb package is not installed: "
               "pip install 'toolrl_jax[wandb]'")
    with pytest.raises(ImportError, match=re.escape(message)):
        M.MetricsLogger(str(tmp_path / "w"), loggers=("jsonl", "wandb"))


def _wandb_records(path):
    """Records of a ``.wandb`` file: a 7-byte header (":W&B", magic, version), then LevelDB-log
    framing (32 KiB blocks; record headers of checksum u32, length u16, type u8: 1 full, 2 first,
    3 middle, 4 last) around serialized ``wandb.proto`` ``Record`` messages. wandb 0.31 has no
    Python reader for it (the datastore lives in the Go core), so the test undoes the framing."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, block, chunks, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too short for a header: zero padding
            pos += block - pos % block
            continue
        _, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunks = data[pos + 7 : pos + 7 + n] if kind in (1, 2) else chunks + data[pos + 7 : pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):
            out.append(wandb_internal_pb2.Record.FromString(chunks))
    return out


def _wandb_history(records):
    return {
        r.history.step.num: {
            (i.key or "/".join(i.nested_key)): json.loads(i.value_json)
            for i in r.history.item
            if not (i.key or "/".join(i.nested_key)).startswith("_")
        }
        for r in records
        if r.WhichOneof("record_type") == "history"
    }


def test_wandb_offline_run_holds_the_scalars_and_rewinds_on_resume(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(key, value)
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "home" / key.lower()))  # nothing outside tmp_path
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    wd = tmp_path / "run"
    wd.mkdir()
    (wd / "config.json").write_text(json.dumps({"name": "demo", "train": {"steps": 3}}))
    with M.MetricsLogger(str(wd), loggers=("wandb",), run_name="demo/grpo_s0", start_step=0) as log:
        log.log(1, {"loss": 0.5, "phase": "rl"})  # strings stay out of W&B, like TensorBoard
        log.log(2, {"loss": np.float32(0.25), "rl/reward": 0.75})
        log.log(3, {"loss": float("nan"), "calls": np.int64(4)})
    # run.finish() returns before the wandb-core service has written the .wandb file; teardown waits
    # for it (at process exit wandb does this itself).
    wandb.teardown()
    assert sorted(os.listdir(wd)) == ["config.json", "wandb"]  # no jsonl / tensorboard asked for
    run_id = (wd / "wandb" / "run_id").read_text().strip()
    (first,) = glob.glob(str(wd / "wandb" / "offline-run-*" / f"run-{run_id}.wandb"))
    records = _wandb_records(first)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.project, run.display_name, run.run_id) == ("demo", "demo/grpo_s0", run_id)
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["name"] == "demo" and config["train"] == {"steps": 3}  # the work dir's config.json
    history = _wandb_history(records)
    assert sorted(history) == [1, 2, 3]
    assert history[1] == {"loss": 0.5} and history[2] == {"loss": 0.25, "rl/reward": 0.75}
    assert math.isnan(history[3]["loss"]) and history[3]["calls"] == 4
    # resumed from a checkpoint at step 3: the run is rewound to step 2 (recorded offline, applied on
    # sync), so the step-3 point of the crashed process is replaced, as in metrics.jsonl
    with M.MetricsLogger(str(wd), loggers=("wandb",), run_name="demo/grpo_s0", start_step=3) as log:
        log.log(3, {"loss": 0.125})
    wandb.teardown()
    (second,) = set(glob.glob(str(wd / "wandb" / "offline-run-*" / f"run-{run_id}.wandb"))) - {first}
    records = _wandb_records(second)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.branch_point.run, run.branch_point.value, run.branch_point.metric) == (run_id, 2, "_step")
    assert _wandb_history(records) == {3: {"loss": 0.125}}


def test_sigkill_loses_at_most_the_line_in_flight(tmp_path):
    code = (
        "import sys, time\n"
        "from toolrl_jax.experiment.metrics import MetricsLogger\n"
        "log = MetricsLogger(sys.argv[1], loggers=('jsonl',))\n"
        "for s in range(3): log.log(s, {'x': s})\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert [r["step"] for r in M.read_metrics(str(tmp_path / "metrics.jsonl"))] == [0, 1, 2]


def _traj(i: int) -> Trajectory:
    n = 6
    return Trajectory(
        prompt_id=i // 2,
        sample_id=i % 2,
        tokens=np.arange(n, dtype=np.int32) + i,
        loss_mask=np.array([0, 0, 1, 1, 0, 1], np.int8),
        old_logp=np.full(n, -0.5, np.float32),
        entropy=np.full(n, 0.25, np.float32),
        segment_ids=np.array([-1, -1, 0, 0, -1, 1], np.int32),
        post_tool_mask=np.array([0, 0, 0, 0, 0, 1], np.int8),
        prompt_len=2,
        calls=[ToolCallRecord("calculator", "1+1", ToolStatus.OK, "2", (2, 4), (4, 5))],
        stop_reason=StopReason.ANSWER,
        text=f"sample {i}: <tool>1+1</tool> 2",
        reward=float(i),
    )


def test_save_rollouts(tmp_path):
    wd = str(tmp_path)
    trajs = [_traj(i) for i in range(5)]
    path = M.save_rollouts(wd, 120, trajs, max_rows=4)
    assert path == os.path.join(wd, "rollouts", "step_000120.jsonl")
    path = M.save_rollouts(wd, 120, trajs, max_rows=4)  # a resumed run saving the same step again
    back = load_trajectories(path)
    assert [t.reward for t in back] == [0.0, 1.0, 2.0, 3.0]
    assert back[1].text == "sample 1: <tool>1+1</tool> 2" and back[1].calls[0].output == "2"
    np.testing.assert_array_equal(back[3].tokens, trajs[3].tokens)
    assert '"text": "sample 0' in open(path).readline()
    assert M.save_rollouts(wd, 7, [], max_rows=4).endswith("step_000007.jsonl")
    assert open(os.path.join(wd, "rollouts", "step_000007.jsonl")).read() == ""


# ---------------------------------------------------------------------------------------- progress


ETA_CASES = [
    (0, "0s"),
    (5, "5s"),
    (59.6, "1m00s"),
    (65, "1m05s"),
    (3725, "1h02m05s"),
    (None, "--"),
    (math.inf, "--"),
]


@pytest.mark.parametrize("secs, text", ETA_CASES)
def test_format_eta(secs, text):
    assert P.format_eta(secs) == text


def test_format_bar_value_and_line():
    assert P.format_bar(3, 10) == "[###.......]"
    assert P.format_bar(50, 40, width=4) == "[####]" and P.format_bar(1, 0) == "[..........]"
    assert [P.format_value(v) for v in (0.41, 0.41329, 1.3, 3, 1234.56, 2e-5, 0.0, float("nan"), "x")] == [
        "0.41", "0.413", "1.3", "3", "1235", "2.00e-05", "0", "nan", "x",
    ]  # fmt: skip
    assert P.format_bar(57, 100, width=100).count("#") == 57  # no float round-down
    assert " 57/100  57% " in P.format_line("x", 57, 100, None, {})
    line = P.format_line("rl", 12, 40, 65, {"reward": 0.41, "acc": 0.62, "calls": 1.3})
    assert line == "rl  [###.......] 12/40  30%  eta 1m05s  reward=0.41 acc=0.62 calls=1.3"


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_eta_excludes_compile_step_and_prints_every_n():
    clock, out = _Clock(), io.StringIO()
    prog = P.Progress(10, "rl", every=4, stream=out, keys=["reward"], clock=clock)
    clock.t = 100.0  # step 1 includes compilation
    prog.update(1, {"reward": 0.5, "loss": 9.0})
    assert prog.eta(1) is None
    for s in range(2, 11):
        clock.t += 2.0
        prog.update(s, {"reward": 0.5})
        if s == 3:
            assert prog.eta(3) == pytest.approx(14.0)  # 2 s/step × 7 left, not (100+4)/3 × 7
    prog.close()
    lines = out.getvalue().splitlines()
    assert [ln.split()[2] for ln in lines[:-1]] == ["1/10", "4/10", "8/10", "10/10"]
    assert "\r" not in out.getvalue() and "loss" not in out.getvalue()
    assert lines[1] == "rl  [####......] 4/10  40%  eta 12s  reward=0.5"
    assert lines[-1] == "rl  done in 1m58s"


def test_progress_tty_redraws_in_place():
    class TTY(io.StringIO):
        def isatty(self):
            return True

    clock, out = _Clock(), TTY()
    prog = P.Progress(3, "sft", stream=out, clock=clock)
    for s in range(1, 4):
        clock.t += 1.0
        prog.update(s, {"loss": 1.0 / s})
    assert out.getvalue().count("\r") == 3 and "\n" not in out.getvalue()
    prog.close()
    assert out.getvalue().endswith("\nsft  done in 3s\n")


# ------------------------------------------------------------------------------------------ report


def _png_size(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24]), len(data)


def test_plot_curves_png(tmp_path):
    rows = [{"step": s, "reward": math.sin(s / 5), "loss": 1 / (s + 1)} for s in range(40)]
    rows[5]["loss"] = None  # a non-finite value logged as null: a gap, not a crash
    out = str(tmp_path / "plots" / "curves.png")
    drawn = R.plot_curves(rows, ["reward", "missing", "loss"], out, title="t", smooth=0.6)
    assert drawn == ["reward", "loss"]
    (w, h), nbytes = _png_size(out)
    assert (w, h) == (800, 280)  # one 4.0 x 2.8 in subplot per key present, at 100 dpi
    assert nbytes > 5000
    grid = str(tmp_path / "grid.png")
    assert R.plot_curves(rows, ["reward", "loss", "reward", "loss"], grid, ncols=3) == ["reward", "loss"] * 2
    assert _png_size(grid)[0] == (1200, 560)  # 4 subplots: 3 columns, 2 rows
    assert R.plot_curves(rows, ["missing"], str(tmp_path / "none.png")) == []
    assert not (tmp_path / "none.png").exists()


def test_ema_smoothing_keeps_gaps():
    got = R._ema([1.0, 3.0, math.nan, 3.0], 0.5)
    assert got[:2] == [1.0, 2.0] and math.isnan(got[2]) and got[3] == 2.5


def test_markdown_table_golden():
    rows = [
        {"method": "grpo", "acc": 0.5, "calls": 2, "note": "a|b"},
        {"method": "tepo_dense", "acc": 0.62345, "calls": 3},
    ]
    assert R.markdown_table(rows, ["method", "acc", "calls", "note"]) == (
        "| method | acc | calls | note |\n"
        "|---|---:|---:|---|\n"
        "| grpo | 0.500 | 2 | a\\|b |\n"
        "| tepo_dense | 0.623 | 3 |  |"
    )
    assert R.markdown_table(rows[:1], ["acc"], floatfmt=".1%").endswith("| 50.0% |")


def test_write_report_and_metrics_report(tmp_path):
    wd = str(tmp_path)
    with M.MetricsLogger(wd, loggers=("jsonl",)) as log:
        for s in range(1, 21):
            log.log(s, {"reward": s / 20, "loss": 2.0 - s / 10})
    table = R.markdown_table([{"k": "lr", "v": 1e-6}], ["k", "v"], floatfmt=".0e")
    keys = ["reward", "loss", "absent"]
    path = R.write_metrics_report(wd, "Demo run", keys, intro="Tiny.", tables=[("Config", table)])
    text = open(path).read()
    assert text.startswith("# Demo run\n") and "Tiny." in text
    assert "## Config" in text and "| lr | 1e-06 |" in text
    assert "## Metrics over 20 steps" in text and "| metric | first | last | min | max | mean |" in text
    assert "| reward | 0.050 | 1.000 | 0.050 | 1.000 | 0.525 |" in text
    assert "| loss | 1.900 | 0.000 | 0.000 | 1.900 | 0.950 |" in text and "absent" not in text
    assert "![Training curves](plots/metrics.png)" in text
    (w, _), _ = _png_size(os.path.join(wd, "plots", "metrics.png"))
    assert w == 800
    path = R.write_report(wd, "T", plots=[("Gone", "plots/nope.png")])
    assert "_(plot missing: `plots/nope.png`)_" in open(path).read()
    assert not [f for f in os.listdir(wd) if f.endswith(".tmp")]
