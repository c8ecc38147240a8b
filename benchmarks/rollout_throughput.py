"""Rollout throughput: our engine vs ``transformers`` ``generate`` on the same random Qwen2 weights.

    python benchmarks/rollout_throughput.py [--batch 64] [--new-tokens 128] [--rounds 5]
        [--segment-len 32] [--cache-windows 8] [--width 256 --vocab 4096]

Model: the demo's (``configs/demo.py``: 4 layers × 128, vocab 1024), or ``--width 256 --vocab 4096``.
Both sides: CPU, fp32, batch 64, 16-token prompts, 128 new tokens, sampling at temperature 1 with
no top-k / top-p, KV cache on, no EOS stop (every row generates exactly 128 tokens). Our weights are
written with ``save_hf`` and loaded by transformers, so both run the same model. Compile time is
excluded for us (``RolloutEngine.warmup`` + one untimed run) just as PyTorch's first-call overhead
is excluded for HF (one untimed run). Every contender runs once per round, in turn, and keeps its
best round: the shared machine's background load drifts, and interleaving exposes all of them to
the same drift.

Our engine runs with ``rollout.segment_len=32`` and ``rollout.cache_windows=8`` (flags): each
compiled segment attends over the smallest cache window its rows can reach instead of the whole
208-position cache — the lever that matters, since a decode step streams the keys and values
it attends over. With ``--lanes 2`` (the default on a 2-core host) the 64 rows run as two
32-row lanes on two XLA host devices, one per core, dispatched together — an XLA:CPU program uses
one core while torch's ``generate`` uses both threads; ``--lanes 1`` gives the one-program number.

Scenario 2 adds one calculator call per row half-way (prompt → 64 tokens → call → result → 64
tokens) and reports its overhead against a no-tool run with the same 64+64 segmentation and the
same sampled-token count. Final line: ``ratio_vs_hf=<x> tool_overhead=<y>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One XLA:CPU program runs on one core; with the host exposed as one XLA device per core, the
# engine decodes one lane (sub-batch) per core concurrently (--lanes). Must precede jax import.
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                               f"device_count={os.cpu_count() or 1}").strip()
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from toolrl_jax.config import RolloutConfig  # noqa: E402
from toolrl_jax.config import load as load_config  # noqa: E402
from toolrl_jax.models.decoder import init_decoder  # noqa: E402
from toolrl_jax.models.hf import save_hf  # noqa: E402
from toolrl_jax.rollout.factory import build_engine  # noqa: E402
from toolrl_jax.tools.base import ParsedCall  # noqa: E402
from toolrl_jax.tools.calculator import CalculatorTool  # noqa: E402

# The demo's model (configs/demo.py), random weights; --width/--vocab scale it up.
DEMO_MODEL = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs",
                                      "demo.py")).model
PROMPT_LEN = 16


class IdTokenizer:
    """Token ids as text ("12 7 99"): the engine's tokenizer interface without a vocabulary file."""

    def encode(self, text, add_special_tokens=False):
        return [int(t) % DEMO_MODEL.vocab_size for t in text.split()]

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(str(int(i)) for i in ids)


class NoCalls:
    """Plain generation: nothing is ever a call or an answer (id text never holds ``<answer>``)."""

    stop_strings = ()
    answer_style = "tag"

    def find_call_end(self, text, start=0):
        return None

    def parse_last_call(self, text):
        return None

    def format_result(self, result):
        return result.text


class OneCallPerRow(NoCalls):
    """At the end of the first segment every row 'calls' the calculator once.

    Rows advance in lock step here (no stop tokens), so the first ``rows`` results formatted are
    exactly one per row; after that no further call is recognised.
    """

    def __init__(self, rows):
        self.rows, self.formatted = rows, 0

    def find_call_end(self, text, start=0):
        return len(text) if self.formatted < self.rows else None

    def parse_last_call(self, text):
        if self.formatted >= self.rows:
            return None
        return ParsedCall("calculator", {"expression": "123456 * 789 + 42"}, text, 0, len(text))

    def format_result(self, result):
        self.formatted += 1
        return " ".join(str(ord(c)) for c in result.text)  # the digits, as token ids


def make_engine(graphdef, batch, new_tokens, segment_len, syntax, max_calls, cache_windows,
                lanes=1):
    if batch % lanes:
        raise SystemExit(f"--batch {batch} does not split into {lanes} lanes")
    if lanes > len(jax.devices()):
        raise SystemExit(f"--lanes {lanes} > {len(jax.devices())} XLA devices")
    rc = RolloutConfig(prompts_per_step=batch, group_size=1, max_prompt_len=PROMPT_LEN,
                       max_new_tokens=new_tokens, max_cache_len=PROMPT_LEN + new_tokens + 64,
                       segment_len=segment_len, max_tool_calls=max_calls, max_result_tokens=16,
                       length_bucket=16, cache_windows=cache_windows, lanes=lanes)
    calc = CalculatorTool()

    def execute(calls):
        return [calc.call(c.arguments) for c in calls]

    return build_engine(lambda p: nnx.merge(graphdef, p), rc, IdTokenizer(), syntax, execute,
                        rows=batch, greedy=False, seed=0, eos_ids=[], stop_sequences=[])


def engine_runner(engine, params, prompts, reset=None):
    """Compiles every cache window and makes one untimed call; returns a timed-run closure."""
    engine.warmup(params)

    def run():
        if reset:
            reset()
        t0 = time.perf_counter()
        trajs = engine.generate(params, prompts, group_size=1)
        return time.perf_counter() - t0, trajs

    run()  # first-call overheads
    return run


def hf_runner(path, prompts, new_tokens):
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count() or 1)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = torch.tensor(prompts, dtype=torch.long)
    kwargs = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=new_tokens,
                  min_new_tokens=new_tokens, use_cache=True, pad_token_id=0, eos_token_id=None)

    def run():
        with torch.no_grad():
            t0 = time.perf_counter()
            out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
            dt = time.perf_counter() - t0
        assert out.shape == (len(prompts), PROMPT_LEN + new_tokens), out.shape
        return dt, out

    run()  # first-call overheads
    return run


def interleaved(runners: dict, rounds: int) -> dict:
    """Best time of each runner over ``rounds`` rounds that run every runner once, in turn.

    Interleaving exposes every contender to the same background load (on a shared 2-core VM
    that load drifts by ±20 % over a minute); the best of several rounds is the least-disturbed
    run of each.
    """
    best = {name: (float("inf"), None) for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            dt, out = run()
            if dt < best[name][0]:
                best[name] = (dt, out)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (best kept)")
    ap.add_argument("--width", type=int, default=0, help="hidden size (default: the demo's)")
    ap.add_argument("--vocab", type=int, default=0, help="vocabulary (default: the demo's)")
    ap.add_argument("--segment-len", type=int, default=32,
                    help="decode steps per compiled segment (rollout.segment_len)")
    ap.add_argument("--cache-windows", type=int, default=8, help="rollout.cache_windows")
    ap.add_argument("--lanes", type=int, default=min(2, os.cpu_count() or 1),
                    help="rollout lanes = sub-batches decoded concurrently, one per XLA device")
    args = ap.parse_args()
    global DEMO_MODEL
    if args.width or args.vocab:
        w = args.width or DEMO_MODEL.hidden_size
        DEMO_MODEL = dataclasses.replace(DEMO_MODEL, hidden_size=w, intermediate_size=3 * w,
                                         vocab_size=args.vocab or DEMO_MODEL.vocab_size)
    b, n = args.batch, args.new_tokens
    seg, cw, lanes = args.segment_len, args.cache_windows, args.lanes
    half = n // 2
    model = init_decoder(DEMO_MODEL, seed=0)
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(0)
    prompts = rng.integers(5, DEMO_MODEL.vocab_size, size=(b, PROMPT_LEN)).tolist()
    print(f"devices: {jax.devices()}  model: {DEMO_MODEL.num_layers} layers x "
          f"{DEMO_MODEL.hidden_size} dim, vocab {DEMO_MODEL.vocab_size}; batch {b}, {n} new tokens; "
          f"segment_len {seg}, cache_windows {cw}, {lanes} lane(s), {args.rounds} interleaved rounds")

    syntax = OneCallPerRow(b)
    tool_engine = make_engine(graphdef, b, n, half, syntax, 1, cw, lanes)
    with tempfile.TemporaryDirectory() as d:
        save_hf(model, d)
        runners = {
            "ours": engine_runner(make_engine(graphdef, b, n, seg, NoCalls(), 0, cw, lanes), params,
                                  prompts),
            "hf": hf_runner(d, prompts, n),
            # Scenario 2: segments of n/2, one call per row at the end of the first one.
            "two_segments": engine_runner(make_engine(graphdef, b, n, half, NoCalls(), 1, cw, lanes),
                                          params, prompts),
            "one_call": engine_runner(tool_engine, params, prompts,
                                      reset=lambda: setattr(syntax, "formatted", 0)),
        }
        best = interleaved(runners, args.rounds)

    ours_s, trajs = best["ours"]
    assert all(t.num_generated == n for t in trajs)
    hf_s = best["hf"][0]
    base_s = best["two_segments"][0]
    tool_s, trajs = best["one_call"]
    calls = [t.num_calls for t in trajs]
    assert calls == [1] * b and all(t.num_generated == n for t in trajs), calls
    assert trajs[0].calls[0].output == "97406826", trajs[0].calls[0].output
    ours_tps, hf_tps = b * n / ours_s, b * n / hf_s
    overhead = tool_s / base_s - 1
    print(f"ours (jax engine)      : {ours_s:7.3f} s  {ours_tps:10.0f} tokens/s  "
          f"({ours_s / n * 1e3:.2f} ms per decode step)")
    print(f"transformers generate  : {hf_s:7.3f} s  {hf_tps:10.0f} tokens/s  "
          f"({hf_s / n * 1e3:.2f} ms per decode step)")
    print(f"no tools, 2 segments   : {base_s:7.3f} s")
    print(f"1 calculator call/row  : {tool_s:7.3f} s  (tools {tool_engine.stats.tools_s:.3f} s "
          f"total over all runs)")
    print(f"ratio_vs_hf={ours_tps / hf_tps:.2f} tool_overhead={overhead:.3f}")


if __name__ == "__main__":
    main()
