"""``mode=label``: AutoTool's warm-up labels from a policy's own no-think samples.

    python -m toolrl_jax.main --config configs/<name>.py --config.mode=label \\
        [--config.model.init_from=<HF dir>] [--config.label.samples=8]

For every train item (the first ``label.max_items``, or all) the policy — ``model.init_from``,
else this work dir's SFT export — samples ``label.samples`` = k completions in forced no-think
mode (the prompt ends with ``data/modes.py:forced_prefix("no_think")``, the empty think block),
at ``rollout.temperature``, through the same engine, prompts and answer-call rule as RL. Each is
graded by the training verifier (``scoring/scored.py:score_batch``); the item is labelled short
when one of them passes, else long, then refined (``data/labels.py:refine``) and written as one
JSON row per item to ``label.out`` (default ``<workdir>/labels.jsonl``). The SFT warm-up reads it
with ``--config.data.sft_policy=labels --config.data.labels_path=<file>``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from etils import epath

from toolrl_jax.config import ConfigError
from toolrl_jax.data.builders import TaskSource
from toolrl_jax.data.fc_warmup import describe_functions_of
from toolrl_jax.data.labels import LABELS_FILE, ItemLabel, label_item, labels_jsonl, refine, summary
from toolrl_jax.data.modes import forced_prefix
from toolrl_jax.data.pipeline import AddPrompt, make_loader
from toolrl_jax.data.splits import TRAIN
from toolrl_jax.experiment import workdir as wd
from toolrl_jax.experiment.context import Experiment
from toolrl_jax.rollout.engine import RolloutEngine
from toolrl_jax.scoring.scored import score_batch
from toolrl_jax.sharding import from_lead, is_lead_process, sync_processes
from toolrl_jax.train.rl_loop import prompt_uid
from toolrl_jax.train.state import make_optimizer

DONE_MARKER = "DONE"  # as experiment/phases.py marks a finished export


def labelling_policy(exp: Experiment) -> str:
    """``model.init_from``, else this run's SFT export; a random init labels nothing useful."""
    if exp.cfg.model.init_from:
        return exp.cfg.model.init_from
    sft = exp.workdir / "sft_policy"
    if from_lead((sft / DONE_MARKER).is_file()):
        return str(sft)
    raise ConfigError(f"mode=label needs a policy to sample: set config.model.init_from, or run "
                      f"mode=sft first so that {sft} holds an export")


def label_records(engine: RolloutEngine, params, records: Sequence[dict], syntax, *,
                  prefix_ids: Sequence[int], samples: int, seq_len: int,
                  max_calls: int) -> list[ItemLabel]:
    """The labels of ``records`` (with ``prompt_ids``) from ``samples`` completions each, every
    prompt followed by ``prefix_ids`` (the forced no-think tag). An item whose prompt no longer
    fits ``rollout.max_prompt_len`` is not sampled (no rewards: long, dropped by refinement)."""
    limit = engine.shapes.prefill_len
    prompts = [[*map(int, r["prompt_ids"]), *prefix_ids] for r in records]
    fits = [i for i, p in enumerate(prompts) if len(p) <= limit]
    labels: dict[int, ItemLabel] = {i: label_item(records[i], [], [])
                                    for i in set(range(len(records))) - set(fits)}
    if fits:
        chosen = [records[i] for i in fits]
        trajs = engine.generate(params, [prompts[i] for i in fits], samples,
                                prompt_ids=[prompt_uid(r) for r in chosen],
                                answer_calls=[r.get("functions", ()) for r in chosen])
        rows = [r for r in chosen for _ in range(samples)]
        scored = score_batch(syntax, trajs, rows, seq_len, max_calls, forced_mode="short")
        for j, i in enumerate(fits):
            rows_j = slice(j * samples, (j + 1) * samples)
            labels[i] = label_item(records[i], scored.score_B[rows_j].tolist(),
                                   scored.correct_B[rows_j].tolist())
    return [labels[i] for i in range(len(records))]


def run_label(exp: Experiment) -> epath.Path:
    """Labels the train split, refines it, writes the labels file; returns its path."""
    cfg, lc = exp.cfg, exp.cfg.label
    source = labelling_policy(exp)
    tx, _ = make_optimizer(cfg.optim, 1)
    policy, state = exp.init_policy(tx, hf_dir=source)
    engine = exp.engine(policy, greedy=False, batch=lc.prompts_per_batch * lc.samples,
                        seed=cfg.train.seed)
    prefix = exp.tokenizer.encode(forced_prefix("no_think"), add_special_tokens=False)
    # Every process reads every item in storage order: generate() splits the rows itself.
    prompting = AddPrompt(exp.tool_names, exp.tokenizer,
                          describe_functions=describe_functions_of(exp.syntax),
                          answer_style=exp.syntax.answer_style, mode_tag=cfg.sft.mode_tag)
    loader = make_loader(TaskSource(exp.builder, TRAIN), batch_size=lc.prompts_per_batch,
                         seed=cfg.train.seed, shuffle=False, num_epochs=1,
                         operations=[prompting], worker_count=0, drop_remainder=False)
    labels: list[ItemLabel] = []
    with jax.set_mesh(exp.mesh):
        for batch in loader:
            if lc.max_items:
                batch = batch[: lc.max_items - len(labels)]
            labels += label_records(engine, state["params"], batch, exp.syntax,
                                    prefix_ids=prefix, samples=lc.samples,
                                    seq_len=exp.train_seq_len,
                                    max_calls=cfg.rollout.max_tool_calls)
            if lc.max_items and len(labels) >= lc.max_items:
                break
    labels = refine(labels, drop_fraction=lc.drop_extremes, min_variance=lc.min_variance,
                    seed=lc.seed)
    out = wd.as_path(lc.out) if lc.out else exp.workdir / LABELS_FILE
    if is_lead_process():
        wd.write_text(out, labels_jsonl(labels))
    sync_processes("labels-written")  # a next step on any host reads the whole file
    counts = summary(labels)
    print(f"label: {counts['items']} items from {source} (k={lc.samples} no-think samples): "
          f"{counts['short']} short, {counts['long']} long; warm-up keeps {counts['keep_sft']} "
          f"(too easy -{counts['drop_sft/too_easy']}, too hard -{counts['drop_sft/too_hard']}, "
          f"not sampled -{counts['drop_sft/not_sampled']}), RL keeps {counts['keep_rl']} "
          f"(variance < {lc.min_variance}: -{counts['drop_rl/low_variance']})", flush=True)
    return out
