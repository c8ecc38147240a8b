"""The phases of a run — SFT warm-up, RL, evaluation — and the pipeline that chains them.

Every phase checkpoints into ``<workdir>/checkpoints/<phase>`` and resumes from the latest
checkpoint there, so killing a run at any point and starting the same command again continues it.
A finished phase exports its policy as an HF checkpoint (``sft_policy/``, ``rl_policy/``), which is
also how the next phase (or a resumed pipeline) picks it up. Metrics of all phases share one
``metrics.jsonl`` with a global step: SFT steps 1..S, then RL steps S+1..S+R.

The work dir may be a URI (``gs://bucket/run``): checkpoints go there through orbax, an export is
written in the local scratch dir and copied up by process 0 (:mod:`toolrl_jax.experiment.workdir`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time

import jax
import jax.numpy as jnp
from etils import epath

from toolrl_jax.buckets import round_up
from toolrl_jax.config import OptimConfig
from toolrl_jax.data.function_calling import read_eval_file
from toolrl_jax.data.pipeline import prompt_loader, sft_loader
from toolrl_jax.data.trajectories import template_renderer, tool_renderer
from toolrl_jax.eval.runner import ThinkSetting, by_think_mode, evaluate, result_lines
from toolrl_jax.experiment import workdir as wd
from toolrl_jax.experiment.context import Experiment
from toolrl_jax.experiment.metrics import MetricsLogger, save_rollouts
from toolrl_jax.experiment.progress import Progress
from toolrl_jax.models.hf import save_hf
from toolrl_jax.rl.recipes import make_recipe, rollout_rows
from toolrl_jax.scoring.arrays import sft_batch
from toolrl_jax.sharding import from_lead, is_lead_process, sync_processes
from toolrl_jax.train.checkpoint import Checkpointer, saved_steps
from toolrl_jax.train.rl_loop import RLTrainer
from toolrl_jax.train.state import make_optimizer
from toolrl_jax.train.steps import LogitHead, build_step, jit_step, sft_loss_fn

DONE_MARKER = "DONE"
SFT_KEYS = ("sft/nll", "policy/entropy", "train/grad_norm")
RL_KEYS = ("rollout/accuracy", "reward/mean", "rollout/tool_calls", "rollout/response_len",
           "policy/entropy", "autotool/beta_long")


def _is_done(path: epath.Path) -> bool:
    """Whether an export finished (process 0's view, on every process)."""
    return from_lead((path / DONE_MARKER).is_file())


def _export(exp: Experiment, policy, params, name: str) -> epath.Path:
    """``<workdir>/<name>``: the HF export of ``params``, then its ``DONE`` marker.

    ``save_hf`` writes local files, so a URI work dir gets the export through its scratch dir:
    written there, copied up and deleted by process 0. The scratch path is the same on every
    process (``save_hf`` names its barrier after it)."""
    out = exp.workdir / name
    staging = wd.scratch_dir(out)
    if wd.is_uri(out) and is_lead_process():
        shutil.rmtree(staging, ignore_errors=True)  # a half-written export of a killed run
    # Every process takes part (the params are sharded across them); process 0 writes.
    save_hf(policy.model(params), str(staging), tokenizer_dir=str(exp.tokenizer_dir))
    if is_lead_process():
        if wd.is_uri(out):
            wd.upload_tree(staging, out)
            shutil.rmtree(staging, ignore_errors=True)
        wd.write_text(out / DONE_MARKER, "complete\n")  # last: the export is whole
    sync_processes(f"export-{name}")  # the next phase loads it on every process
    return out


def _restore(ckpt: Checkpointer, state, iterator):
    step = ckpt.latest_step()
    if step is None:
        return state, 0
    state, extras = ckpt.restore(step, state)  # into the live state's shardings
    iterator.set_state(extras["data_iter"])
    print(f"resumed from {ckpt.directory} step {step}", flush=True)
    return state, step


def _log(logger, progress, step_global, step_local, metrics, keys):
    if logger is not None:
        logger.log(step_global, metrics)
    if progress is not None:
        progress.update(step_local, {k.split("/")[-1]: metrics[k] for k in keys if k in metrics})


# ---------------------------------------------------------------------------------------- SFT
def _sft_renderer(exp: Experiment):
    """Tool results in warm-up data exactly as rollouts will append them: search is re-run
    through the real (in-process, fast) tool; calculator/python outputs are stored exactly and
    only re-wrapped with the syntax's template (re-running python would start a sandbox each)."""
    if "search" in exp.tool_names:
        return tool_renderer(exp.syntax, exp.executor)
    return template_renderer(exp.syntax.result_template)


def run_sft(exp: Experiment, logger: MetricsLogger | None) -> epath.Path:
    """SFT warm-up; returns the exported policy dir. A finished phase is not run again."""
    cfg, sc = exp.cfg, exp.cfg.sft
    out = exp.workdir / "sft_policy"
    if _is_done(out):
        return out
    optim = OptimConfig(learning_rate=sc.learning_rate, warmup_steps=sc.warmup_steps,
                        weight_decay=cfg.optim.weight_decay, grad_clip=cfg.optim.grad_clip)
    tx, schedule = make_optimizer(optim, sc.steps)
    policy, state = exp.init_policy(tx)
    loader = sft_loader(cfg.data, exp.builder, batch_size=sc.batch_size, seed=cfg.train.seed,
                        tools=exp.tool_names, tokenizer=exp.tokenizer,
                        render_result=_sft_renderer(exp), mode_tag=sc.mode_tag,
                        describe_functions=_describe_functions(exp.syntax),
                        answer_style=exp.syntax.answer_style)
    it = iter(loader)
    ckpt = Checkpointer(exp.workdir / "checkpoints" / "sft", keep=cfg.train.keep_checkpoints,
                        save_interval_steps=cfg.train.checkpoint_every)
    state, start = _restore(ckpt, state, it)
    seq_len = round_up(sc.seq_len or cfg.data.sft_max_len, cfg.rollout.length_bucket)
    micro = sc.batch_size // cfg.train.micro_batch_size if cfg.train.micro_batch_size else 1
    bucket = cfg.rollout.length_bucket if cfg.train.pad_to == "bucket" else 0
    steps_by_len: dict[int, object] = {}  # one compiled step per padded length
    progress = Progress(sc.steps, "sft", every=max(sc.steps // 20, 1), keys=["nll", "entropy"])
    with jax.set_mesh(exp.mesh):
        for step in range(start, sc.steps):
            batch = sft_batch(next(it), seq_len, bucket)
            length = batch.tokens_BT.shape[1]
            if length not in steps_by_len:
                steps_by_len[length] = jit_step(
                    build_step(policy, tx, sft_loss_fn(cfg.train.logit_chunk),
                               micro_batches=micro, schedule=schedule,
                               block_bytes=LogitHead.from_config(cfg).block_bytes()),
                    state, exp.mesh, batch)
            state, metrics = steps_by_len[length](state, batch)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            _log(logger, progress, step + 1, step + 1, metrics, SFT_KEYS[:2])
            ckpt.save(step + 1, state, {"data_iter": it.get_state(), "phase": "sft"},
                      force=step + 1 == sc.steps)
    progress.close()
    ckpt.close()
    return _export(exp, policy, state["params"], "sft_policy")


# ---------------------------------------------------------------------------------------- RL
def run_rl(exp: Experiment, logger: MetricsLogger | None, init_dir: str = "",
           step_offset: int = 0) -> epath.Path:
    """RL from ``init_dir`` (an HF export, e.g. the SFT policy) or the config's model."""
    cfg = exp.cfg
    out = exp.workdir / "rl_policy"
    if _is_done(out):
        return out
    tx, schedule = make_optimizer(cfg.optim, cfg.train.steps)
    recipe = make_recipe(cfg.rl, group_size=cfg.rollout.group_size,
                         max_new_tokens=cfg.rollout.max_new_tokens)
    policy, state = exp.init_policy(tx, beta_long=recipe.init_beta_long, hf_dir=init_dir)
    # The step donates the state, so the frozen reference needs buffers of its own.
    ref = jax.tree.map(jnp.copy, state["params"]) if recipe.needs_reference else None
    # The engine knows the largest rollout call: an oversampling recipe's first round draws
    # ceil(prompts × factor) prompts, more rows than the P × G slots (rollout.slots=0). Told
    # only P × G, it thought no row would ever wait, and the extra rows queued through programs
    # warm-up had not compiled (queue-only refills, drain tiers): they compiled mid-run, step
    # after step (measured 32–43 s per rollout call against 4 s on configs/autotool_fc.py with
    # rl.oversample_factor=1.5).
    rows = rollout_rows(recipe, cfg.rollout.prompts_per_step, cfg.rollout.group_size)
    trainer = RLTrainer(cfg, policy, tx, schedule, recipe,
                        engine=exp.engine(policy, greedy=False, seed=cfg.train.seed, batch=rows,
                                          default_slots=cfg.rollout.prompts_per_step
                                          * cfg.rollout.group_size),
                        syntax=exp.syntax, mesh=exp.mesh, seq_len=exp.train_seq_len,
                        ref_params=ref)
    loader = prompt_loader(cfg.data, exp.builder, split="train",
                           batch_size=cfg.rollout.prompts_per_step, seed=cfg.train.seed,
                           tools=exp.tool_names, tokenizer=exp.tokenizer,
                           mode_tag=cfg.sft.mode_tag,  # prompts as the warm-up asked
                           describe_functions=_describe_functions(exp.syntax),
                           answer_style=exp.syntax.answer_style)
    it = iter(loader)
    ckpt = Checkpointer(exp.workdir / "checkpoints" / "rl", keep=cfg.train.keep_checkpoints,
                        save_interval_steps=cfg.train.checkpoint_every)
    state, start = _restore(ckpt, state, it)
    progress = Progress(cfg.train.steps, f"rl[{recipe.name}]",
                        every=max(cfg.train.steps // 20, 1),
                        keys=["accuracy", "mean", "tool_calls", "response_len"])
    with jax.set_mesh(exp.mesh):
        if start < cfg.train.steps:
            # Every cache window up front: rollouts then never compile mid-run (steady state).
            t0 = time.perf_counter()
            compiled = trainer.engine.warmup(state["params"])
            shapes = trainer.engine.shapes
            print(f"rl: compiled the rollout ({compiled} programs: prefill; decode and extend "
                  f"per cache window {list(shapes.kv_windows)}, extend per result width "
                  f"{list(shapes.extend_widths)}) in {time.perf_counter() - t0:.1f} s", flush=True)
        for step in range(start, cfg.train.steps):
            t0 = time.perf_counter()
            state, metrics, scored = trainer.iteration(state, it, step)
            metrics["time/step_s"] = time.perf_counter() - t0
            _log(logger, progress, step_offset + step + 1, step + 1, metrics, RL_KEYS[:4])
            every = cfg.train.save_rollouts_every
            if every and (step + 1) % every == 0:
                save_rollouts(exp.workdir, step_offset + step + 1, scored.trajectories,
                              max_rows=4 * cfg.rollout.group_size)
            ckpt.save(step + 1, state, {"data_iter": it.get_state(), "phase": "rl"},
                      force=step + 1 == cfg.train.steps)
    progress.close()
    ckpt.close()
    return _export(exp, policy, state["params"], "rl_policy")


# ---------------------------------------------------------------------------------------- eval
def items_path(workdir, name: str):
    """``eval_<name>_items.json`` beside ``eval_<name>.json``: per-item correctness."""
    return epath.Path(workdir) / f"eval_{name}_items.json"


def read_items(workdir, name: str, metric: str = "correct", mode: str | None = None,
               where: str = "split") -> dict[str, float] | None:
    """One per-item metric of an evaluation (``{id: mean over samples}``, metrics:
    ``eval/runner.py:ITEM_METRICS``) for one think mode (default: the first evaluated) and split
    / benchmark; None for results written before items were."""
    path = items_path(workdir, name)
    if not path.is_file():
        return None
    items = json.loads(path.read_text())
    mode = mode or next(iter(items), None)
    return items.get(mode, {}).get(where, {}).get(metric) if mode else None


def run_eval(exp: Experiment, policy_dir: str, name: str) -> dict:
    """Evaluates an HF export; caches the result as ``eval_<name>.json`` (resume-safe)."""
    path = exp.workdir / f"eval_{name}.json"
    if from_lead(path.is_file()):
        return json.loads(path.read_text())
    cfg, ec = exp.cfg, exp.cfg.eval
    tx, _ = make_optimizer(cfg.optim, 1)
    policy, state = exp.init_policy(tx, hf_dir=policy_dir)
    samples = 1 if ec.greedy else ec.samples
    engine = exp.engine(policy, greedy=ec.greedy, batch=ec.prompts_per_batch * samples,
                        seed=cfg.train.seed + 1)
    prompting = dict(tools=exp.tool_names, tokenizer=exp.tokenizer,
                     describe_functions=_describe_functions(exp.syntax),
                     answer_style=exp.syntax.answer_style, mode_tag=cfg.sft.mode_tag)
    files = {bench: read_eval_file(file) for bench, file in ec.file_map().items()}

    # Per-item means (mode → split / benchmark → metric → id → mean over samples): the unit the
    # comparison's paired bootstrap intervals resample (eval/bootstrap.py).
    items: dict[str, dict[str, dict[str, dict[str, float]]]] = {}

    def run(think: ThinkSetting, source=None, where: str = "split") -> dict:
        loader = prompt_loader(cfg.data, exp.builder, split=ec.split,
                               batch_size=ec.prompts_per_batch, seed=cfg.train.seed,
                               source=source, **prompting)
        return evaluate(engine, state["params"], loader, exp.syntax, samples=samples,
                        seq_len=exp.train_seq_len, max_calls=cfg.rollout.max_tool_calls,
                        max_items=ec.max_items or None, think=think,
                        item_metrics=items.setdefault(think.mode, {}).setdefault(where, {}))

    def run_mode(think: ThinkSetting) -> dict:
        result = run(think) if ec.eval_split_too or not files else {}
        if files:
            result["benchmarks"] = {bench: run(think, records, bench)
                                    for bench, records in files.items()}
            if "all" not in result:  # only files: "all" is the first benchmark's (reports read it)
                result["all"] = next(iter(result["benchmarks"].values()))["all"]
        return result

    t0 = time.perf_counter()
    with jax.set_mesh(exp.mesh):
        result = by_think_mode({mode: run_mode(ThinkSetting.of(mode, exp.tokenizer))
                                for mode in ec.think_modes})
    result["_meta"] = {"policy": str(policy_dir), "seconds": time.perf_counter() - t0,
                       "think_modes": list(ec.think_modes)}
    if is_lead_process():
        # Items first: a result file without its items file is never left behind.
        wd.write_text(items_path(exp.workdir, name), json.dumps(items))
        wd.write_text(path, json.dumps(result, indent=2))
    for line in result_lines(name, result):
        print(line, flush=True)
    return result


def _describe_functions(syntax):
    """The syntax's way to list an item's own functions (None if it has none: such items then
    need a chat template that renders tools)."""
    try:
        syntax.describe_functions([])
    except (NotImplementedError, AttributeError):
        return None
    return syntax.describe_functions


def global_resume_step(exp: Experiment) -> int:
    """The global step the metrics file is valid up to, from what the checkpoints say.

    Read by process 0 from the file system and broadcast: every process must take the same
    decision (a process that saw another's freshly created directory would otherwise open an
    extra checkpoint manager, whose barrier the others never reach).
    """
    return from_lead(_resume_step_on_disk(exp))


def _resume_step_on_disk(exp: Experiment) -> int:
    cfg = exp.cfg
    sft_steps = cfg.sft.steps if cfg.mode == "pipeline" else 0
    if cfg.mode in ("rl", "pipeline"):
        steps = saved_steps(exp.workdir / "checkpoints" / "rl")
        if steps:
            return sft_steps + steps[-1] + 1
    if cfg.mode == "pipeline" and (exp.workdir / "sft_policy" / DONE_MARKER).is_file():
        return sft_steps + 1
    if cfg.mode in ("sft", "pipeline"):
        steps = saved_steps(exp.workdir / "checkpoints" / "sft")
        if steps:
            return steps[-1] + 1
    return 0


@dataclasses.dataclass
class PipelineResult:
    sft_eval: dict
    rl_eval: dict
    report: str
