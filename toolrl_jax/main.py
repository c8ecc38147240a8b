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
    parser.add_argument("--workdir", default="", help="run directory (default: runs/<name>)")
    return parser.parse_args(rest), overrides


def run(argv: list[str]) -> int:
    args, overrides = _parse_args(argv)
    cfg = config_lib.load(args.config, overrides)
    if args.workdir:
        import dataclasses

        cfg = dataclasses.replace(cfg, workdir=args.workdir)

    from toolrl_jax.sharding import make_mesh, maybe_initialize_distributed

    maybe_initialize_distributed()
    mesh = make_mesh(cfg.mesh)
    if cfg.mode == "plan":
        from toolrl_jax.train.plan import format_plan, make_plan

        print(format_plan(cfg, make_plan(cfg, mesh)))
        return 0
    raise config_lib.ConfigError(f"config.mode='{cfg.mode}' is not handled")


def main(argv: list[str] | None = None) -> int:
    from toolrl_jax.models.hf import CheckpointError
    from toolrl_jax.sharding import ShardingError

    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (config_lib.ConfigError, CheckpointError, ShardingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
