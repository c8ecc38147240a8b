"""A simulated pod's rollout: N processes × D CPU devices run one ``generate`` call (tests).

    python -m toolrl_jax.testing.multihost_rollout --num-processes 2 --process-id 0 \\
        --port 12345 --devices 4 --workdir /tmp/run

A tiny random model on a data=2 × fsdp=2 × tensor=2 mesh samples 8 prompts × 2 rows that call a
fake tool often. The tool sleeps a random time drawn from *this process's* own generator (up to
``--max-delay`` seconds) and reports a call as timed out when its argument is a multiple of 3,
so the processes see different latencies and outcomes — the situation in which host-side choices that disagree
would dispatch different programs and hang the collectives. Each process appends every call it
runs to ``calls.<process>.txt`` and writes the trajectories it got back to
``trajectories.<process>.pkl``; ``--num-processes 1 --devices 8`` is the reference run.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys

from toolrl_jax.testing.multihost import pod_process

PROMPTS = ["What is 12 * 7?", "Answer <python>", "print(84) result", "7 * 8 = ?", "x y",
           "<answer>", "a much longer prompt here", "zz"]


def _executor(workdir: str, max_delay: float):
    import threading
    import time

    import jax
    import numpy as np

    from toolrl_jax.tools.base import ToolResult
    from toolrl_jax.types import ToolStatus

    me = jax.process_index()
    rng = np.random.default_rng(1000 + me)  # per-host delays: the hosts disagree on timing
    lock = threading.Lock()
    log = os.path.join(workdir, f"calls.{me}.txt")

    def run(calls):
        out = []
        for c in calls:
            with lock:
                delay = float(rng.uniform(0, max_delay))
                with open(log, "a") as f:
                    f.write(f"{c.raw!r}\n")
            time.sleep(delay)
            n = int(c.arguments["n"])
            if n % 3 == 0:
                out.append(ToolResult(ToolStatus.TIMEOUT, f"no result after {delay:.2f} s"))
            else:
                out.append(ToolResult(ToolStatus.OK, " ".join(["ok"] * (n % 7 + 1))))
        return out

    return run


def run_scenario(workdir: str, max_delay: float) -> None:
    import tempfile

    import jax
    import transformers
    from flax import nnx

    from toolrl_jax.config import MeshConfig, RolloutConfig
    from toolrl_jax.models.decoder import init_decoder
    from toolrl_jax.rollout.factory import build_engine
    from toolrl_jax.sharding import make_mesh
    from toolrl_jax.testing.fake_tools import EndTokenSyntax
    from toolrl_jax.testing.tiny import tiny_qwen2_config, write_tiny_tokenizer

    tok_dir = tempfile.mkdtemp()
    write_tiny_tokenizer(tok_dir, vocab_size=128)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir)
    model = init_decoder(tiny_qwen2_config(vocab_size=len(tokenizer), num_layers=2), seed=0)
    graphdef, params = nnx.split(model)
    end_ids = [i for i in range(60, 100)
               if tokenizer.encode(tokenizer.decode([i]), add_special_tokens=False) == [i]]
    rc = RolloutConfig(prompts_per_step=len(PROMPTS), group_size=2, max_prompt_len=32,
                       max_new_tokens=40, max_cache_len=176, segment_len=8, max_tool_calls=2,
                       max_result_tokens=12, length_bucket=8, cache_windows=4)
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    with jax.set_mesh(mesh):
        engine = build_engine(lambda p: nnx.merge(graphdef, p), rc, tokenizer,
                              EndTokenSyntax([tokenizer.decode([i]) for i in end_ids]),
                              _executor(workdir, max_delay), rows=16, greedy=False, seed=1,
                              eos_ids=[tokenizer.convert_tokens_to_ids("<|im_end|>")],
                              stop_sequences=[[i] for i in end_ids], mesh=mesh)
        prompts = [tokenizer.encode(t, add_special_tokens=False) for t in PROMPTS]
        trajs = engine.generate(params, prompts, group_size=2)
    me = jax.process_index()
    with open(os.path.join(workdir, f"trajectories.{me}.pkl"), "wb") as f:
        pickle.dump(trajs, f)
    # The text of every call in the trajectories, as the executor logged it (the call's turn).
    made = [repr(tokenizer.decode(list(t.tokens[c.call_span[0]:c.call_span[1]])))
            for t in trajs for c in t.calls]
    with open(os.path.join(workdir, f"made.{me}.txt"), "w") as f:
        f.write("".join(m + "\n" for m in made))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--max-delay", type=float, default=2.0)
    args = pod_process(argv, p)
    os.makedirs(args.workdir, exist_ok=True)
    run_scenario(args.workdir, args.max_delay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
