"""Rollout throughput: our engine vs ``transformers`` ``generate`` on the same random Qwen2 weights.

    python benchmarks/rollout_throughput.py [--batch 64] [--new-tokens 128] [--repeats 2]

Model: the demo's (``configs/demo.py``: 4 layers × 128, vocab 1024), or ``--width 256 --vocab 4096``.
Both sides: CPU, fp32, batch 64, 16-token prompts, 128 new tokens, sampling at temperature 1 with
no top-k / top-p, KV cache on, no EOS stop (every row generates exactly 128 tokens). Our weights are
written with ``save_hf`` and loaded by transformers, so both run the same model. Compile time is
excluded for us (one warm-up run) just as PyTorch's first-call overhead is excluded for HF.

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
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from toolrl_jax.buckets import RolloutShapes  # noqa: E402
from toolrl_jax.config import RolloutConfig  # noqa: E402
from toolrl_jax.config import load as load_config  # noqa: E402
from toolrl_jax.models.decoder import init_decoder  # noqa: E402
from toolrl_jax.models.hf import save_hf  # noqa: E402
from toolrl_jax.rollout.compiled import CompiledRollout, SamplingParams  # noqa: E402
from toolrl_jax.rollout.engine import EngineLimits, RolloutEngine  # noqa: E402
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
    """Plain generation: nothing is ever a call or an answer."""

    stop_strings = ()

    def find_call_end(self, text, start=0):
        return None

    def parse_last_call(self, text):
        return None

    def format_result(self, result):
        return result.text

    def extract_answer(self, text):
        return None


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


def make_engine(graphdef, batch, new_tokens, segment_len, syntax, max_calls):
    rc = RolloutConfig(prompts_per_step=batch, group_size=1, max_prompt_len=PROMPT_LEN,
                       max_new_tokens=new_tokens, max_cache_len=PROMPT_LEN + new_tokens + 64,
                       segment_len=segment_len, max_tool_calls=max_calls, max_result_tokens=16,
                       length_bucket=16)
    compiled = CompiledRollout(lambda p: nnx.merge(graphdef, p), RolloutShapes.from_config(rc),
                               eos_ids=[],
                               stop_sequences=[], sampling=SamplingParams(temperature=1.0))
    calc = CalculatorTool()

    def execute(calls):
        return [calc.call(c.arguments) for c in calls]

    return RolloutEngine(compiled, IdTokenizer(), syntax, execute,
                         EngineLimits(new_tokens, max_calls, 16), seed=0)


def time_engine(engine, params, prompts, repeats, reset=None):
    engine.generate(params, prompts, group_size=1)  # compile
    best = float("inf")
    for _ in range(repeats):
        if reset:
            reset()
        t0 = time.perf_counter()
        trajs = engine.generate(params, prompts, group_size=1)
        best = min(best, time.perf_counter() - t0)
    return best, trajs


def time_hf(path, prompts, new_tokens, repeats):
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count() or 1)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = torch.tensor(prompts, dtype=torch.long)
    kwargs = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=new_tokens,
                  min_new_tokens=new_tokens, use_cache=True, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        model.generate(ids[:, :PROMPT_LEN], attention_mask=torch.ones_like(ids), max_new_tokens=4,
                       do_sample=True, pad_token_id=0)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
            best = min(best, time.perf_counter() - t0)
    assert out.shape == (len(prompts), PROMPT_LEN + new_tokens), out.shape
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--width", type=int, default=0, help="hidden size (default: the demo's)")
    ap.add_argument("--vocab", type=int, default=0, help="vocabulary (default: the demo's)")
    args = ap.parse_args()
    global DEMO_MODEL
    if args.width or args.vocab:
        w = args.width or DEMO_MODEL.hidden_size
        DEMO_MODEL = dataclasses.replace(DEMO_MODEL, hidden_size=w, intermediate_size=3 * w,
                                         vocab_size=args.vocab or DEMO_MODEL.vocab_size)
    b, n = args.batch, args.new_tokens
    model = init_decoder(DEMO_MODEL, seed=0)
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(0)
    prompts = rng.integers(5, DEMO_MODEL.vocab_size, size=(b, PROMPT_LEN)).tolist()
    print(f"devices: {jax.devices()}  model: {DEMO_MODEL.num_layers} layers x "
          f"{DEMO_MODEL.hidden_size} dim, vocab {DEMO_MODEL.vocab_size}; batch {b}, {n} new tokens")

    ours_s, trajs = time_engine(make_engine(graphdef, b, n, n, NoCalls(), 0), params, prompts,
                                args.repeats)
    assert all(t.num_generated == n for t in trajs)
    with tempfile.TemporaryDirectory() as d:
        save_hf(model, d)
        hf_s = time_hf(d, prompts, n, args.repeats)
    ours_tps, hf_tps = b * n / ours_s, b * n / hf_s
    print(f"ours (jax engine)      : {ours_s:7.3f} s  {ours_tps:10.0f} tokens/s")
    print(f"transformers generate  : {hf_s:7.3f} s  {hf_tps:10.0f} tokens/s")

    half = n // 2
    base_s, _ = time_engine(make_engine(graphdef, b, n, half, NoCalls(), 1), params, prompts,
                            args.repeats)
    syntax = OneCallPerRow(b)
    tool_engine = make_engine(graphdef, b, n, half, syntax, 1)
    tool_s, trajs = time_engine(tool_engine, params, prompts, args.repeats,
                                reset=lambda: setattr(syntax, "formatted", 0))
    calls = [t.num_calls for t in trajs]
    assert calls == [1] * b and all(t.num_generated == n for t in trajs), calls
    assert trajs[0].calls[0].output == "97406826", trajs[0].calls[0].output
    overhead = tool_s / base_s - 1
    print(f"no tools, 2 segments   : {base_s:7.3f} s")
    print(f"1 calculator call/row  : {tool_s:7.3f} s  (tools {tool_engine.stats.tools_s:.3f} s "
          f"total over runs)")
    print(f"ratio_vs_hf={ours_tps / hf_tps:.2f} tool_overhead={overhead:.3f}")


if __name__ == "__main__":
    main()
