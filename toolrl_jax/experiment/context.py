"""Everything a run needs, built once from the Config: mesh, data, tokenizer, tools, policy.

Side effects (files under the work dir, tool processes) happen here, at the edge; the loops get
ready objects. Re-running in the same work dir reuses what is there (dataset, tokenizer, corpus).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import jax

from toolrl_jax.buckets import round_up
from toolrl_jax.config import Config, ConfigError, to_dict
from toolrl_jax.data.prepare import prepare_corpus, prepare_dataset, prepare_tokenizer
from toolrl_jax.models.decoder import init_sharded
from toolrl_jax.models.hf import load_hf
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


def _write_config(cfg: Config, workdir: Path) -> None:
    """``<workdir>/config.json`` (process 0 writes it for every process)."""
    workdir.mkdir(parents=True, exist_ok=True)
    if is_lead_process():
        with open(workdir / "config.json", "w") as f:
            json.dump(to_dict(cfg), f, indent=2)


def _prepare_files(cfg: Config, workdir: Path):
    """config.json, the built dataset, the search corpus and the tokenizer in ``workdir``."""
    _write_config(cfg, workdir)
    builder = prepare_dataset(cfg.data, workdir)
    tools_cfg = cfg.tools
    if "search" in tools_cfg.enabled and tools_cfg.search.corpus_path == GENERATED_CORPUS:
        corpus = prepare_corpus(cfg.data, workdir)
        if corpus is None:
            raise ConfigError(f"config.tools.search.corpus_path='{GENERATED_CORPUS}' needs "
                              "config.data.source='synthetic' with 'lookup' in config.data.tasks")
        tools_cfg = dataclasses.replace(
            tools_cfg, search=dataclasses.replace(tools_cfg.search, corpus_path=str(corpus)))
    tokenizer = prepare_tokenizer(cfg.data, workdir, builder, tools_cfg.enabled)
    if len(tokenizer) > cfg.model.vocab_size:
        raise ConfigError(f"config.model.vocab_size={cfg.model.vocab_size} is smaller than the "
                          f"tokenizer's {len(tokenizer)} tokens")
    return tools_cfg, builder, tokenizer


@dataclasses.dataclass
class Experiment:
    cfg: Config
    workdir: Path
    mesh: jax.sharding.Mesh
    builder: object
    tokenizer: object
    syntax: object
    executor: object
    tool_names: tuple[str, ...]
    tokenizer_dir: Path
    # Compiled rollout functions by (greedy, batch): they take params as an argument, so every
    # run on the same architecture and shapes (e.g. the recipes of a comparison) shares them.
    compiled: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def setup(cls, cfg: Config) -> Experiment:
        workdir = Path(cfg.workdir or os.path.join("runs", cfg.name))
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
        tools_cfg, builder, tokenizer = lead_first("experiment-setup",
                                                   lambda: _prepare_files(cfg, workdir))
        tok_dir = Path(cfg.data.tokenizer) if cfg.data.tokenizer else workdir / "tokenizer"
        return cls(cfg, workdir, mesh, builder, tokenizer, build_syntax(tools_cfg),
                   build_executor(tools_cfg), tuple(tools_cfg.enabled), tok_dir)

    def derive(self, cfg: Config, workdir: Path) -> Experiment:
        """The same data, tokenizer, tools and compiled rollouts under another config / work dir
        (``cfg`` may change RL knobs and seeds, not shapes or data)."""
        _write_config(cfg, workdir)
        return dataclasses.replace(self, cfg=cfg, workdir=workdir)

    # ------------------------------------------------------------------ policy
    def init_policy(self, tx, beta_long: float = 0.0, hf_dir: str = ""):
        """Policy + train state: from ``hf_dir`` / ``model.init_from`` if set, else random init."""
        source = hf_dir or self.cfg.model.init_from
        with jax.set_mesh(self.mesh):
            if source:
                m = self.cfg.model  # weights in param_dtype, compute in dtype
                model = load_hf(source, m.param_dtype, m.dtype, self.mesh,
                                scan_layers=m.scan_layers, attention=m.attention)
            else:
                model = init_sharded(self.cfg.model, self.mesh, self.cfg.train.seed)
            # The train step's forward checkpoints each layer as train.remat says (the attribute
            # travels in the graphdef; the rollout's cached path ignores it).
            model.remat = self.cfg.train.remat
            return create_state(model, tx, self.mesh, beta_long)

    # ------------------------------------------------------------------ rollout
    def engine(self, policy: Policy, *, greedy: bool, batch: int | None = None,
               seed: int = 0) -> RolloutEngine:
        """A rollout engine over ``batch`` rows (default: one RL step's prompts × group)."""
        rc = self.cfg.rollout
        return build_engine(lambda params: policy.model(params), rc, self.tokenizer, self.syntax,
                            self.executor.run, rows=batch or rc.prompts_per_step * rc.group_size,
                            greedy=greedy, seed=seed, compiled_cache=self.compiled)

    @property
    def train_seq_len(self) -> int:
        """One padded train length for every RL batch: the rollout cache bounds trajectories."""
        rc = self.cfg.rollout
        return round_up(rc.max_cache_len, rc.length_bucket)

    def close(self) -> None:
        self.executor.close()
