"""A ``gs://bucket/run`` work dir stays a URI end to end (an in-memory bucket stands in for GCS)."""

import json
import os

import fsspec
import pytest
from etils import epath
from etils.epath import backend as epath_backend
from fsspec.implementations.memory import MemoryFileSystem

from toolrl_jax import main as main_lib
from toolrl_jax.experiment import phases
from toolrl_jax.experiment import workdir as wd
from toolrl_jax.experiment.metrics import MetricsLogger, read_metrics
from toolrl_jax.testing.tiny_run import tiny_overrides
from toolrl_jax.train import checkpoint as checkpoint_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "configs", "demo.py")
RUN = "gs://bucket/run"


class FakeGCS(MemoryFileSystem):
    """``gs://`` in memory, as strict as GCS where it matters: objects cannot be appended to."""

    protocol = ("gs", "gcs")
    store: dict = {}  # its own store: MemoryFileSystem's is shared by every memory:// user
    pseudo_dirs = [""]

    def __init__(self, *args, finalize_on_close=True, **kwargs):  # epath passes gcsfs's flag
        del finalize_on_close
        super().__init__(*args, **kwargs)

    @classmethod
    def _strip_protocol(cls, path):
        key = str(path).removeprefix("gs://").removeprefix("gcs://").strip("/")
        return "/" + key if key else ""

    def _open(self, path, mode="rb", **kwargs):
        if "a" in mode:
            raise OSError(f"gs://{path.lstrip('/')}: GCS objects cannot be appended to")
        return super()._open(path, mode, **kwargs)


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """The fake bucket's objects (key -> bytes), with epath's gs:// backend pointed at it, the
    scratch root in ``tmp_path/scratch`` and the current directory ``tmp_path/cwd``."""
    FakeGCS.store.clear()
    FakeGCS.pseudo_dirs[:] = [""]
    for name in FakeGCS.protocol:
        fsspec.register_implementation(name, FakeGCS, clobber=True)
    # epath resolves gs:// to fsspec when TensorFlow is absent (it is, in this venv); its
    # filesystem cache is cleared so no real gcsfs instance from elsewhere is reused.
    assert not epath.gpath._is_tf_installed(), "epath would use tf.io.gfile, not the fake bucket"
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    monkeypatch.setenv(wd.SCRATCH_ENV, str(tmp_path / "scratch"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    yield FakeGCS.store
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    FakeGCS.store.clear()


def _objects(store) -> set[str]:
    return {key.removeprefix("/bucket/run/") for key in store if key.startswith("/bucket/run/")}


def _read(store, name: str) -> bytes:
    return store[f"/bucket/run/{name}"].getvalue()


def _local_names(root) -> set[str]:
    return {name for _, dirs, files in os.walk(root) for name in dirs + files}


def test_paths_keep_their_scheme_and_map_to_one_scratch_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(wd.SCRATCH_ENV, str(tmp_path / "s"))
    assert str(wd.as_path(RUN) / "metrics.jsonl") == f"{RUN}/metrics.jsonl"
    assert wd.scratch_dir(RUN) == tmp_path / "s" / "gs" / "bucket" / "run"
    assert wd.scratch_dir(f"{RUN}/sft_policy") == wd.scratch_dir(RUN) / "sft_policy"
    assert wd.scratch_dir("gs://bucket/../../etc") == tmp_path / "s" / "gs" / "bucket" / "etc"
    local = tmp_path / "local_run"
    assert wd.scratch_dir(local) == local and wd.as_path(local) == epath.Path(local)


def test_files_round_trip_through_the_bucket(bucket, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.bin").write_bytes(b"\x00" * 10)
    assert wd.upload_tree(src, f"{RUN}/tree") == ["a.txt", "sub/b.bin"]
    wd.write_text(f"{RUN}/note.md", "hello")
    assert _objects(bucket) == {"tree/a.txt", "tree/sub/b.bin", "note.md"}
    with wd.local_copy(f"{RUN}/tree") as local:
        assert open(os.path.join(local, "sub", "b.bin"), "rb").read() == b"\x00" * 10
    assert not os.path.exists(local), "the downloaded copy outlived its context"
    with wd.local_copy(f"{RUN}/note.md") as local:  # a single file (e.g. a .gguf) keeps its name
        assert os.path.basename(local) == "note.md" and open(local).read() == "hello"
    assert not os.path.exists(local)
    with pytest.raises(FileNotFoundError, match="gs://bucket/run/missing"):
        wd.download_tree(f"{RUN}/missing", tmp_path / "dst")


def test_metrics_are_appended_locally_and_resumed_from_the_bucket(bucket):
    with MetricsLogger(RUN, loggers=("jsonl", "tensorboard")) as log:
        for step in (1, 2, 3):
            log.log(step, {"loss": 1.0 / step})
    assert [r["step"] for r in read_metrics(f"{RUN}/metrics.jsonl")] == [1, 2, 3]
    assert any(k.startswith("tensorboard/events.out.tfevents.") for k in _objects(bucket))
    os.remove(wd.scratch_dir(RUN) / "metrics.jsonl")  # a restarted job on a fresh VM
    with MetricsLogger(RUN, start_step=3, loggers=("jsonl",)) as log:  # resumed at step 3
        log.log(3, {"loss": 0.5})
    assert [r["step"] for r in read_metrics(f"{RUN}/metrics.jsonl")] == [1, 2, 3]


def _uri_checkpoints(monkeypatch, local_root):
    """Orbax writes gs:// through tensorstore's own GCS driver, which no fsspec filesystem can
    stand in for: the checkpoint dir is mapped to a local one at the Checkpointer's door, after
    asserting that the phases handed it the work dir's URI (what orbax gets in production)."""
    seen = []

    def local(directory):
        path = os.fspath(directory)
        assert path.startswith(f"{RUN}/checkpoints/"), path
        seen.append(path)
        return os.path.join(local_root, path.removeprefix(f"{RUN}/"))

    real_checkpointer, real_saved_steps = checkpoint_lib.Checkpointer, checkpoint_lib.saved_steps
    monkeypatch.setattr(phases, "Checkpointer",
                        lambda directory, *a, **k: real_checkpointer(local(directory), *a, **k))
    monkeypatch.setattr(phases, "saved_steps", lambda directory: real_saved_steps(local(directory)))
    return seen


def test_a_gs_workdir_stays_a_uri_end_to_end(bucket, tmp_path, monkeypatch):
    seen = _uri_checkpoints(monkeypatch, str(tmp_path / "orbax"))
    overrides = tiny_overrides(RUN, **{"sft.steps": 2, "train.steps": 2})
    argv = ["--config", DEMO, "--workdir", overrides.pop("workdir")]
    argv += [f"--config.{k}={v}" for k, v in overrides.items()]
    assert main_lib.run(argv) == 0

    objects = _objects(bucket)
    for name in ("config.json", "metrics.jsonl", "report.md", "plots/sft.png", "plots/rl.png",
                 "eval_sft.json", "eval_rl.json", "tokenizer/tokenizer.json",
                 "rollouts/step_000003.jsonl", "rollouts/step_000004.jsonl"):
        assert name in objects, name
    for export in ("sft_policy", "rl_policy"):
        for name in ("model.safetensors", "config.json", "tokenizer.json", "DONE"):
            assert f"{export}/{name}" in objects, f"{export}/{name}"
    assert any(k.startswith("tensorboard/events.out.tfevents.") for k in objects)
    assert json.loads(_read(bucket, "config.json"))["workdir"] == RUN
    assert [r["step"] for r in read_metrics(f"{RUN}/metrics.jsonl")] == [1, 2, 3, 4]
    assert "![SFT warm-up](plots/sft.png)" in _read(bucket, "report.md").decode()
    assert {p.rsplit("/", 1)[-1] for p in seen} >= {"sft", "rl"}
    assert os.listdir(tmp_path / "orbax" / "checkpoints" / "rl")
    # Nothing took "gs://bucket/run" for a local path ("gs:/bucket/run" under some directory).
    assert "gs:" not in _local_names(tmp_path) and "gs:" not in _local_names(ROOT)
    # The exports were staged in scratch and removed once uploaded; scratch holds no outputs.
    scratch = wd.scratch_dir(RUN)
    assert not (scratch / "sft_policy").exists() and not (scratch / "report.md").exists()

    # Run again: every phase is found done and every evaluation cached, read from the bucket.
    done = sorted(k for k in _objects(bucket) if k.endswith((".safetensors", "eval_rl.json")))
    before = {k: _read(bucket, k) for k in done}
    assert main_lib.run(argv) == 0
    assert {k: _read(bucket, k) for k in done} == before
