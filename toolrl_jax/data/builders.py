"""TFDS builders (array_record, no TensorFlow) for task records, and a grain-ready data source.

TFDS without TensorFlow works only for ``file_format="array_record"`` builders read through
``as_data_source`` (``tfds.load`` / ``as_dataset`` / TFRecord need TF), so every builder here:

* builds its ``DatasetInfo`` directly (``tfds.core.DatasetInfo(builder=self, features=…)``);
* writes under the caller's ``data_dir`` only (a run's work dir; never ~/tensorflow_datasets);
* names its builder config after a fingerprint of its inputs (file bytes or config knobs), so a
  changed file or knob builds a new dataset instead of silently reusing a stale one;
* stores all record fields as ``Text`` (metadata as sorted-key JSON), since TFDS features must be
  declared up front and user metadata is free-form.

Builders: :class:`JsonlTasks` (the user's file), :class:`Gsm8kTasks` (GSM8K JSONL with its
calculator traces), :class:`SyntheticTasks` (the generated tool tasks). Splits: ``train`` and
``heldout``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core.utils import tqdm_utils

from toolrl_jax.config.data import DataConfig
from toolrl_jax.data import gsm8k
from toolrl_jax.data.records import FIELDS, DataError, read_task_jsonl
from toolrl_jax.data.splits import HELDOUT, SPLITS, TRAIN, split_of
from toolrl_jax.data.synthetic import synthetic_splits
from toolrl_jax.jsonl import iter_json_lines

_MAX_SKIPPED_LISTED = 100  # skipped-row messages kept in the dataset metadata (all are counted)


def _features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({name: tfds.features.Text() for name in FIELDS})


def record_to_example(record: dict[str, Any]) -> dict[str, str]:
    example = {name: record[name] for name in FIELDS[:-1]}
    example["metadata"] = json.dumps(record["metadata"], sort_keys=True, ensure_ascii=False)
    return example


def example_to_record(example: dict[str, Any]) -> dict[str, Any]:
    """A stored TFDS example (bytes fields) back to a record (str fields, metadata dict)."""
    record = {name: _text(example[name]) for name in FIELDS}
    record["metadata"] = json.loads(record["metadata"])
    return record


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_split(records: list[dict[str, Any]], cfg: DataConfig) -> dict[str, list[dict[str, Any]]]:
    """Assigns file rows to train / held-out by a hash of the question (same text, same split)."""
    out: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for record in records:
        out[split_of(record["question"], cfg.split_seed, cfg.heldout_fraction)].append(record)
    return out


class _TaskBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Common machinery: fingerprinted config name, features, split generation, skip counts."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Task records: id, question, answer, task, difficulty, trajectory."}
    DESCRIPTION = ""
    HOMEPAGE = ""
    CITATION = ""
    # DataConfig fields that change this builder's output (they go into the fingerprint).
    CONFIG_FIELDS: tuple[str, ...] = ()

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS's default resolves the package via importlib_resources, which tfds only declares
        # for Python < 3.9, so without TensorFlow's dependency tree it raises
        # ModuleNotFoundError. This module's own path is what TFDS wants (for checksums.tsv).
        return epath.Path(__file__)

    def __init__(self, *, cfg: DataConfig, data_dir: str | Path):
        if not str(data_dir):
            raise ValueError(f"{type(self).__name__}: data_dir is required (pass <workdir>/tfds); "
                             "building in ~/tensorflow_datasets is never the default")
        self._cfg = cfg
        self._skipped: list[str] = []
        super().__init__(
            data_dir=str(data_dir),
            config=tfds.core.BuilderConfig(name=self._config_name()),
            file_format="array_record",
        )

    # -- subclass hooks ------------------------------------------------------------------------
    def _input_digests(self) -> list[str]:
        """Digests of the input files (empty for generated data)."""
        return []

    def _records_by_split(self) -> dict[str, list[dict[str, Any]]]:
        raise NotImplementedError

    # -- TFDS hooks ----------------------------------------------------------------------------
    def _config_name(self) -> str:
        knobs = {name: getattr(self._cfg, name) for name in self.CONFIG_FIELDS}
        payload = json.dumps([knobs, self._input_digests()], sort_keys=True, default=list)
        return "h" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=_features(),
            homepage=self.HOMEPAGE or None,
            citation=self.CITATION or None,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[str, dict]]]:
        del dl_manager  # inputs are local files or generated
        by_split = self._records_by_split()
        self.info.metadata["config"] = {n: getattr(self._cfg, n) for n in self.CONFIG_FIELDS}
        self.info.metadata["skipped_rows"] = len(self._skipped)
        self.info.metadata["skipped"] = self._skipped[:_MAX_SKIPPED_LISTED]
        return {split: self._generate_examples(by_split[split]) for split in SPLITS}

    def _generate_examples(self, records: list[dict[str, Any]]) -> Iterator[tuple[str, dict]]:
        for record in records:
            yield record["id"], record_to_example(record)


class JsonlTasks(_TaskBuilder):
    """The user's JSONL task file (``question``, ``answer``, optional ``id``, ``trajectory``,
    ``task``, ``difficulty``, ``metadata``; other keys are kept in metadata)."""

    DESCRIPTION = "Tasks from a user JSONL file, split into train / heldout by question hash."
    CONFIG_FIELDS = ("split_seed", "heldout_fraction", "on_bad_row")

    def _path(self) -> Path:
        path = Path(self._cfg.jsonl_path)
        if not path.is_file():
            raise DataError(f"{path}: task file not found (data.jsonl_path)")
        return path

    def _input_digests(self) -> list[str]:
        return [_sha256_file(self._path())]

    def _records_by_split(self) -> dict[str, list[dict[str, Any]]]:
        result = read_task_jsonl(self._path(), self._cfg.on_bad_row)
        self._skipped = result.skipped
        return _hash_split(result.records, self._cfg)


class Gsm8kTasks(_TaskBuilder):
    """GSM8K JSONL (default: the shipped 200-row test subset) with calculator-trace trajectories."""

    DESCRIPTION = "GSM8K grade-school math; <<a*b=c>> annotations as calculator tool calls."
    HOMEPAGE = "https://github.com/openai/grade-school-math"
    CITATION = (
        "@article{cobbe2021gsm8k, title={Training Verifiers to Solve Math Word Problems}, "
        "author={Cobbe, Karl and others}, journal={arXiv preprint arXiv:2110.14168}, year={2021}}"
    )
    CONFIG_FIELDS = ("split_seed", "heldout_fraction", "on_bad_row")

    def _path(self) -> Path:
        path = Path(self._cfg.gsm8k_path) if self._cfg.gsm8k_path else gsm8k.SHIPPED_SUBSET
        if not path.is_file():
            raise DataError(f"{path}: GSM8K file not found (data.gsm8k_path)")
        return path

    def _input_digests(self) -> list[str]:
        return [_sha256_file(self._path())]

    def _records_by_split(self) -> dict[str, list[dict[str, Any]]]:
        path, records = self._path(), []
        bad = None if self._cfg.on_bad_row == "raise" else self._skipped
        try:
            lines = list(iter_json_lines(path, bad_lines=bad))
        except ValueError as e:
            raise DataError(str(e)) from e
        for lineno, row in lines:
            try:
                records.append(gsm8k.row_to_record(row, index=lineno))
            except ValueError as e:
                if self._cfg.on_bad_row == "raise":
                    raise DataError(f"{path}:{lineno}: {e}") from e
                self._skipped.append(f"{path}:{lineno}: {e}")
        return _hash_split(records, self._cfg)


class SyntheticTasks(_TaskBuilder):
    """The generated arithmetic + multi-hop lookup tasks (:mod:`toolrl_jax.data.synthetic`)."""

    DESCRIPTION = "Synthetic tool tasks: arithmetic and multi-hop lookup, easy and hard."
    CONFIG_FIELDS = ("tasks", "num_train", "num_heldout", "hard_fraction", "seed", "split_seed",
                     "heldout_fraction", "world_seed", "num_countries", "num_cities", "num_famous",
                     "num_rare", "arithmetic_tool")

    def _records_by_split(self) -> dict[str, list[dict[str, Any]]]:
        return synthetic_splits(self._cfg)


BUILDERS: dict[str, type[_TaskBuilder]] = {
    "jsonl": JsonlTasks,
    "gsm8k": Gsm8kTasks,
    "synthetic": SyntheticTasks,
}


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    # TFDS's per-split tqdm bars flood test and training logs; restore the caller's setting.
    previous = tqdm_utils._active
    tfds.disable_progress_bar()
    try:
        yield
    finally:
        tqdm_utils._active = previous


def prepare_builder(cfg: DataConfig, data_dir: str | Path) -> _TaskBuilder:
    """The builder for ``cfg.source``, built under ``data_dir`` if not built there already."""
    builder = BUILDERS[cfg.source](cfg=cfg, data_dir=data_dir)
    with _quiet_progress_bars():
        builder.download_and_prepare()
    return builder


@dataclasses.dataclass(frozen=True)
class TaskSource:
    """Random access to one split's records, decoded (a grain ``RandomAccessDataSource``).

    Its ``repr`` names the dataset and fingerprint but not the directory, so a grain iterator
    state saved in one work dir restores in a copy of it, and refuses a different dataset.
    """

    builder: _TaskBuilder
    split: str

    def __post_init__(self) -> None:
        if self.split not in (TRAIN, HELDOUT):
            raise ValueError(f"unknown split {self.split!r}; expected one of {list(SPLITS)}")
        object.__setattr__(self, "_source", self.builder.as_data_source(split=self.split))

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return example_to_record(self._source[index])

    def __repr__(self) -> str:
        b = self.builder
        return (f"TaskSource({b.name}/{b.builder_config.name}/{b.version}, split={self.split}, "
                f"records={len(self)})")

    def records(self) -> list[dict[str, Any]]:
        """Every record of the split, in storage order (small datasets: tokenizer training)."""
        return [self[i] for i in range(len(self))]
