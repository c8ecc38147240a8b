"""A simulated pod on one machine: N processes × D CPU devices running the real trainer (tests).

    python -m toolrl_jax.testing.multihost --num-processes 2 --process-id 0 --port 12345 \\
        --devices 4 --workdir /tmp/run

Each process calls ``jax.distributed.initialize`` on 127.0.0.1 with CPU collectives (gloo), so
the mesh spans every process's devices exactly as on a TPU pod. The scenario: 2 SFT steps, then RL
interrupted after step 1 (checkpointed), resumed from that checkpoint, finished at step 2 and
exported. ``--num-processes 1 --devices 8`` runs the same scenario as one process with the same
global mesh, the reference a multi-process run must match.
"""

from __future__ import annotations

import argparse
import os
import sys


class Preempted(Exception):
    """Stands in for the kill signal of a preempted VM."""


def _configure(num_processes: int, process_id: int, port: int, devices: int) -> None:
    # Must precede the first JAX backend use.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={devices}")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_default_matmul_precision", "highest")
    if num_processes > 1:
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                                   num_processes=num_processes, process_id=process_id,
                                   local_device_ids=list(range(devices)))


def scenario_overrides(workdir: str) -> dict:
    from toolrl_jax.testing.tiny_run import tiny_overrides

    return tiny_overrides(workdir, mode="pipeline", **{
        "mesh.data": 2, "mesh.fsdp": 4, "mesh.tensor": 1,
        "sft.steps": 2, "sft.batch_size": 8,
        "rollout.prompts_per_step": 2, "rollout.group_size": 4,
        "train.steps": 2, "train.checkpoint_every": 1, "train.save_rollouts_every": 1,
    })


def run_scenario(workdir: str) -> None:
    from toolrl_jax.config import load
    from toolrl_jax.experiment.context import Experiment
    from toolrl_jax.experiment.metrics import MetricsLogger
    from toolrl_jax.experiment.phases import global_resume_step, run_rl, run_sft
    from toolrl_jax.train.checkpoint import Checkpointer

    demo = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "demo.py")
    cfg = load(os.path.abspath(demo), scenario_overrides(workdir))

    def phases():
        exp = Experiment.setup(cfg)
        try:
            with MetricsLogger(str(exp.workdir), start_step=global_resume_step(exp)) as logger:
                sft_dir = run_sft(exp, logger)
                run_rl(exp, logger, init_dir=str(sft_dir), step_offset=cfg.sft.steps)
        finally:
            exp.close()

    save = Checkpointer.save

    def killed_after_rl_step_1(self, step, *args, **kwargs):
        out = save(self, step, *args, **kwargs)
        if step == 1 and self.directory.name == "rl":
            self.close()
            raise Preempted
        return out

    Checkpointer.save = killed_after_rl_step_1
    try:
        phases()
        raise AssertionError("the simulated preemption did not happen")
    except Preempted:
        pass
    finally:
        Checkpointer.save = save
    phases()  # the same command again: resumes RL from step 1 and finishes


def pod_process(argv: list[str] | None = None,
                parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parses a scenario process's flags (``parser`` may add its own) and joins the pod."""
    p = parser or argparse.ArgumentParser()
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--process-id", type=int, default=0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--workdir", required=True)
    args = p.parse_args(argv)
    _configure(args.num_processes, args.process_id, args.port, args.devices)
    return args


def main(argv: list[str] | None = None) -> int:
    run_scenario(pod_process(argv).workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
