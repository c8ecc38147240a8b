"""Entry point: ``python -m toolrl_jax.main --config configs/<name>.py [--config.x=y] [--workdir D]``.

Dispatches on ``config.mode``. Config, checkpoint and sharding problems end the run with one line
on stderr (exit code 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys

from toolrl_jax import config as config_lib


def _parse_args(argv: list[str]) -> tuple[argparse.Namespace, dict]:
    overrides, rest = config_lib.parse_overrides(argv)
    parser = argparse.ArgumentParser(prog="python -m toolrl_jax.main", description=__doc__)
    parser.add_argument("--config", required=True, help="path to configs/<name>.py")
    parser.add_argument("--workdir", default="",
                        help="run directory: a local path or a URI such as gs://bucket/run "
                             "(default: runs/<name>)")
    return parser.parse_args(rest), overrides


def run(argv: list[str]) -> int:
    args, overrides = _parse_args(argv)
    cfg = config_lib.load(args.config, overrides)
    if args.workdir:
        import dataclasses

        cfg = dataclasses.replace(cfg, workdir=args.workdir)

    if cfg.mode == "plan":  # before any JAX call: the planner may simulate config.plan.devices
        from toolrl_jax.experiment.plan import run_plan

        return run_plan(cfg, argv)

    from toolrl_jax.sharding import make_mesh, maybe_initialize_distributed

    maybe_initialize_distributed()
    if cfg.train.compilation_cache_dir:
        import jax

        jax.config.update("jax_compilation_cache_dir", cfg.train.compilation_cache_dir)
        # Cache everything that took a second or more to compile (the step, the rollout programs).
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    make_mesh(cfg.mesh)
    return _run_training_mode(cfg)


def _run_training_mode(cfg) -> int:
    import json

    from toolrl_jax.experiment.context import Experiment
    from toolrl_jax.experiment.metrics import MetricsLogger
    from toolrl_jax.experiment.phases import global_resume_step, run_eval, run_rl, run_sft
    from toolrl_jax.experiment.pipeline import run_pipeline

    exp = Experiment.setup(cfg)
    print(f"workdir: {exp.workdir}", flush=True)
    try:
        if cfg.mode == "pipeline":
            run_pipeline(exp)
        elif cfg.mode == "compare":
            from toolrl_jax.experiment.compare import run_compare

            print(f"comparison: {run_compare(exp)}", flush=True)
        elif cfg.mode in ("sft", "rl"):
            with MetricsLogger(str(exp.workdir), start_step=global_resume_step(exp),
                               loggers=cfg.train.loggers, run_name=cfg.name) as logger:
                out = run_sft(exp, logger) if cfg.mode == "sft" else run_rl(exp, logger)
            print(f"policy exported to {out}", flush=True)
        elif cfg.mode == "label":
            from toolrl_jax.experiment.label import run_label

            print(f"labels: {run_label(exp)}", flush=True)
        elif cfg.mode == "eval":
            source = cfg.model.init_from or _latest_export(exp.workdir)
            result = run_eval(exp, source, "policy")
            print(json.dumps(result, indent=2))
        else:
            raise config_lib.ConfigError(f"config.mode='{cfg.mode}' is not handled")
    finally:
        exp.close()
    return 0


def _latest_export(workdir) -> str:
    for name in ("rl_policy", "sft_policy"):
        if (workdir / name / "DONE").is_file():
            return str(workdir / name)
    raise config_lib.ConfigError(
        f"mode=eval needs config.model.init_from or an exported policy in {workdir}")


def main(argv: list[str] | None = None) -> int:
    from toolrl_jax.data.records import DataError
    from toolrl_jax.models.hf import CheckpointError
    from toolrl_jax.sharding import ShardingError
    from toolrl_jax.train.checkpoint import CheckpointRestoreError

    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (config_lib.ConfigError, CheckpointError, ShardingError, CheckpointRestoreError,
            DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
