"""A simulated pod: 2 processes × 4 CPU devices (jax.distributed on 127.0.0.1, gloo collectives)
run SFT, RL with a preemption and a resume from checkpoint, and the HF export
(``toolrl_jax/testing/multihost.py``); the result equals one process with 8 devices."""


import numpy as np

from toolrl_jax.experiment.metrics import read_metrics
from toolrl_jax.models.safetensors_io import open_tensors
from toolrl_jax.testing.pod import free_port, spawn, wait

TIMEOUT_S = 600

SCENARIO = "toolrl_jax.testing.multihost"


def test_two_processes_match_one_process(tmp_path):
    one, pod = tmp_path / "one", tmp_path / "pod"
    logs = [open(tmp_path / f"log{i}.txt", "w+b") for i in range(3)]
    port = free_port()
    procs = [spawn(SCENARIO, pod, logs[i], num_processes=2, process_id=i, port=port,
                   devices=4) for i in range(2)]
    procs.append(spawn(SCENARIO, one, logs[2], num_processes=1, devices=8))
    wait(procs, logs, TIMEOUT_S)

    # One metrics line per step (2 SFT + 2 RL), written by process 0 alone.
    steps = [r["step"] for r in read_metrics(str(pod / "metrics.jsonl"))]
    assert steps == [1, 2, 3, 4], steps
    assert [r["step"] for r in read_metrics(str(one / "metrics.jsonl"))] == steps
    # The RL phase was interrupted and resumed from its step-1 checkpoint.
    assert (pod / "checkpoints" / "rl" / "1").is_dir()
    ta = open_tensors(str(one / "rl_policy" / "model.safetensors"))
    tb = open_tensors(str(pod / "rl_policy" / "model.safetensors"))
    assert sorted(ta) == sorted(tb)
    moved = 0.0
    sft = open_tensors(str(one / "sft_policy" / "model.safetensors"))
    for name in ta:
        np.testing.assert_allclose(np.asarray(tb[name]), np.asarray(ta[name]), atol=1e-5,
                                   err_msg=name)
        moved = max(moved, float(np.abs(np.asarray(ta[name]) - np.asarray(sft[name])).max()))
    assert moved > 1e-4  # RL really updated the weights that are compared
