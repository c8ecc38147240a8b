"""A simulated pod's rollout: 2 processes × 4 CPU devices (jax.distributed on 127.0.0.1, gloo)
each run their own rows and tools (``toolrl_jax/testing/multihost_rollout.py``) with per-host
random tool delays up to 2 s and timeouts; nothing hangs, every call runs exactly once in total,
and both processes get the same trajectories as one process with 8 devices."""

import pickle

import numpy as np

from toolrl_jax.testing.pod import free_port, spawn, wait

WATCHDOG_S = 420

SCENARIO = "toolrl_jax.testing.multihost_rollout"


def _load(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def test_two_process_rollout_runs_each_call_once_and_agrees(tmp_path):
    one, pod = tmp_path / "one", tmp_path / "pod"
    logs = [open(tmp_path / f"log{i}.txt", "w+b") for i in range(3)]
    port = free_port()
    procs = [spawn(SCENARIO, pod, logs[i], num_processes=2, process_id=i, port=port,
                   devices=4) for i in range(2)]
    procs.append(spawn(SCENARIO, one, logs[2], num_processes=1, devices=8, max_delay=0.0))
    wait(procs, logs, WATCHDOG_S)

    a, b = _load(pod / "trajectories.0.pkl"), _load(pod / "trajectories.1.pkl")
    ref = _load(one / "trajectories.0.pkl")
    assert len(a) == len(b) == len(ref) == 16
    for x, y, z in zip(a, b, ref):
        assert (x.prompt_id, x.sample_id) == (y.prompt_id, y.sample_id) == (z.prompt_id,
                                                                            z.sample_id)
        np.testing.assert_array_equal(x.tokens, y.tokens)
        np.testing.assert_array_equal(x.tokens, z.tokens)
        np.testing.assert_allclose(x.old_logp, z.old_logp, atol=1e-5)
        assert [c.status for c in x.calls] == [c.status for c in z.calls]
    # Every call of the final trajectories ran once, on the process that owns its row.
    ran = [(pod / f"calls.{i}.txt").read_text().splitlines() for i in range(2)]
    made = (pod / "made.0.txt").read_text().splitlines()
    assert len(made) == sum(t.num_calls for t in a) >= 8
    assert sorted(ran[0] + ran[1]) == sorted(made)
    assert ran[0] and ran[1]  # both hosts ran tools
    statuses = {c.status.name for t in a for c in t.calls}
    assert {"OK", "TIMEOUT"} <= statuses
