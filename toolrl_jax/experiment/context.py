"""Everything a run needs, built once from the Config: mesh, data, tokenizer, tools, policy.

Side effects (files under the work dir, tool processes) happen here, at the edge; the loops get
ready objects. Re-running in the same work dir reuses what is there (dataset, tokenizer, corpus).
The work dir may be a URI (``gs://bucket/run``): the dataset, corpus and tokenizer files then live
in a local scratch dir (:mod:`toolrl_jax.experiment.workdir` says what goes where), and the
tokenizer is kept in the work dir too, so every host and every restart uses the same one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import jax
from etils import epath

from toolrl_jax.buckets import round_up
from toolrl_jax.config import Config, ConfigError, to_dict
from toolrl_jax.data.fc_warmup import describe_functions_of
from toolrl_jax.data.prepare import prepare_corpus, prepare_dataset, prepare_tokenizer
from toolrl_jax.experiment import workdir as wd
from toolrl_jax.models.decoder import init_sharded
from toolrl_jax.models.hf import load_hf
from toolrl_jax.models.layers import DTYPES
from toolrl_jax.rollout.engine import RolloutEngine
from toolrl_jax.rollout.factory import build_engine
from toolrl_jax.sharding import (
    check_batch_divisible,
    check_heads_fit_mesh,
    is_lead_process,
    lead_first,
    make_mesh,
)
from toolrl_jax.tools.registry import build_executor, build_syntax
from toolrl_jax.train.state import Policy, create_state

GENERATED_CORPUS = "@generated"


def _write_config(cfg: Config, workdir: epath.Path) -> None:
    """``<workdir>/config.json`` (process 0 writes it for every process)."""
    if is_lead_process():
        wd.write_text(workdir / "config.json", json.dumps(to_dict(cfg), indent=2))


def _tokenizer_dir(cfg: Config, workdir: epath.Path, scratch: Path) -> Path:
    """The local directory of the run's tokenizer files (the tokenizers library and the HF export
    read them from a local path). A tokenizer given as a URI is downloaded next to the scratch dir;
    the demo BPE of a URI work dir is fetched from ``<workdir>/tokenizer`` when an earlier process
    (or run) trained it, so that every host tokenizes with the very same merges."""
    if cfg.data.tokenizer:
        if wd.is_uri(cfg.data.tokenizer):
            wd.download_tree(cfg.data.tokenizer, wd.scratch_dir(cfg.data.tokenizer))
        return wd.scratch_dir(cfg.data.tokenizer)  # a local path as it is (made absolute)
    local = scratch / "tokenizer"
    if wd.is_uri(workdir):
        if (workdir / "tokenizer" / "tokenizer.json").is_file():
            wd.download_tree(workdir / "tokenizer", local)
        else:  # a scratch copy left by an earlier run whose work dir is gone: train afresh
            shutil.rmtree(local, ignore_errors=True)
    return local


def _prepare_files(cfg: Config, workdir: epath.Path, scratch: Path):
    """config.json in ``workdir``; the built dataset, the search corpus and the tokenizer in
    ``scratch`` (``workdir`` itself when it is local)."""
    _write_config(cfg, workdir)
    scratch.mkdir(parents=True, exist_ok=True)
    tok_dir = _tokenizer_dir(cfg, workdir, scratch)
    data_cfg = cfg.data  # a tokenizer URI is read from its local copy
    if wd.is_uri(cfg.data.tokenizer):
        data_cfg = dataclasses.replace(cfg.data, tokenizer=str(tok_dir))
    builder = prepare_dataset(data_cfg, scratch)
    tools_cfg = cfg.tools.for_recipe(cfg.rl.recipe)  # e.g. TAO-RL's "stderr fails a call"
    if "search" in tools_cfg.enabled and tools_cfg.search.corpus_path == GENERATED_CORPUS:
        corpus = prepare_corpus(data_cfg, scratch)
        if corpus is None:
            raise ConfigError(f"config.tools.search.corpus_path='{GENERATED_CORPUS}' needs "
                              "config.data.source='synthetic' with 'lookup' in config.data.tasks")
        tools_cfg = dataclasses.replace(
            tools_cfg, search=dataclasses.replace(tools_cfg.search, corpus_path=str(corpus)))
    syntax = build_syntax(tools_cfg)  # function-calling prompts describe functions its way
    tokenizer = prepare_tokenizer(data_cfg, scratch, builder, tools_cfg.enabled,
                                  describe_functions_of(syntax), syntax.answer_style)
    if len(tokenizer) > cfg.model.vocab_size:
        raise ConfigError(f"config.model.vocab_size={cfg.model.vocab_size} is smaller than the "
                          f"tokenizer's {len(tokenizer)} tokens")
    if not cfg.data.tokenizer and is_lead_process():
        wd.upload_tree(tok_dir, workdir / "tokenizer")  # a no-op when workdir is local
    return tools_cfg, builder, tokenizer, tok_dir


@dataclasses.dataclass
class Experiment:
    cfg: Config
    workdir: epath.Path  # local or a URI (gs://…): every output goes here
    mesh: jax.sharding.Mesh
    builder: object
    tokenizer: object
    syntax: object
    executor: object
    tool_names: tuple[str, ...]
    tokenizer_dir: Path
    scratch: Path  # local stand-in for what needs a real path (the work dir itself when local)
    # Compiled rollout functions by (greedy, batch): they take params as an argument, so every
    # run on the same architecture and shapes (e.g. the recipes of a comparison) shares them.
    compiled: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def setup(cls, cfg: Config) -> Experiment:
        workdir = wd.as_path(cfg.workdir or os.path.join("runs", cfg.name))
        scratch = wd.scratch_dir(workdir)
        mesh = make_mesh(cfg.mesh)
        rows = cfg.rollout.prompts_per_step * cfg.rollout.group_size
        if cfg.mode in ("sft", "pipeline"):
            check_batch_divisible(cfg.sft.batch_size, mesh, "config.sft.batch_size")
        if cfg.mode in ("rl", "pipeline"):
            check_batch_divisible(rows // cfg.train.mini_batches, mesh,
                                  "rollout rows per mini-batch (prompts_per_step*group_size/"
                                  "train.mini_batches)")
        check_heads_fit_mesh(cfg.model, mesh)
        # On a pod every process runs this; process 0 writes the shared files first and the
        # others then find and reuse them (two writers of one dataset directory would collide).
        # With a URI work dir each host prepares its own scratch copy, after process 0 has put the
        # tokenizer in the work dir for the others to fetch.
        tools_cfg, builder, tokenizer, tok_dir = lead_first(
            "experiment-setup", lambda: _prepare_files(cfg, workdir, scratch))
        syntax = build_syntax(tools_cfg)
        if cfg.eval.files or "function_call" in cfg.data.tasks or cfg.data.source == "jsonl":
            # Items may bring their own functions: their calls must parse (they are answers).
            syntax.open_names = True
        return cls(cfg, workdir, mesh, builder, tokenizer, syntax,
                   build_executor(tools_cfg), tuple(tools_cfg.enabled), tok_dir, scratch)

    def derive(self, cfg: Config, workdir: epath.Path) -> Experiment:
        """The same data, tokenizer, tools and compiled rollouts under another config / work dir
        (``cfg`` may change RL knobs and seeds, not shapes or data)."""
        workdir = wd.as_path(workdir)
        _write_config(cfg, workdir)
        return dataclasses.replace(self, cfg=cfg, workdir=workdir, scratch=wd.scratch_dir(workdir))

    # ------------------------------------------------------------------ policy
    def init_policy(self, tx, beta_long: float = 0.0, hf_dir: str = ""):
        """Policy + train state: from ``hf_dir`` / ``model.init_from`` if set (a local dir or a
        URI, read through a local copy), else random init."""
        source = hf_dir or self.cfg.model.init_from
        with jax.set_mesh(self.mesh):
            if source:
                m = self.cfg.model  # weights in param_dtype, compute in dtype
                with wd.local_copy(source) as local:
                    model = load_hf(local, m.param_dtype, m.dtype, self.mesh,
                                    scan_layers=m.scan_layers, attention=m.attention)
            else:
                model = init_sharded(self.cfg.model, self.mesh, self.cfg.train.seed)
            # The train step's forward checkpoints each layer as train.remat says (the attribute
            # travels in the graphdef; the rollout's cached path ignores it).
            model.remat = self.cfg.train.remat
            return create_state(model, tx, self.mesh, beta_long)

    # ------------------------------------------------------------------ rollout
    def engine(self, policy: Policy, *, greedy: bool, batch: int | None = None,
               seed: int = 0, default_slots: int = 0) -> RolloutEngine:
        """A rollout engine over up to ``batch`` rows per call (default: one RL step's prompts ×
        group); ``default_slots``: the slots when ``rollout.slots=0`` (default: one per row)."""
        rc = self.cfg.rollout
        return build_engine(lambda params: policy.model(params), rc, self.tokenizer, self.syntax,
                            self.executor.run, rows=batch or rc.prompts_per_step * rc.group_size,
                            greedy=greedy, seed=seed, compiled_cache=self.compiled,
                            mesh=self.mesh, compute_dtype=DTYPES[self.cfg.model.dtype],
                            default_slots=default_slots)

    @property
    def train_seq_len(self) -> int:
        """One padded train length for every RL batch: the rollout cache bounds trajectories."""
        rc = self.cfg.rollout
        return round_up(rc.max_cache_len, rc.length_bucket)

    def close(self) -> None:
        self.executor.close()
