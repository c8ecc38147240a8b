"""Compile time of the train forward + backward vs depth, scanned (``model.scan_layers``) or not.

    python benchmarks/compile_layers.py [--width 256] [--layers 2 28] [--seq 256] [--batch 2]
        [--remat none] [--attention auto] [--repeats 2]

Model: Qwen2-style (q/k/v biases, GQA 2:1, SwiGLU 4x, untied head), ``--width`` hidden size with
head dim 64, vocab 2048, fp32. The program is the train step's core: ``value_and_grad`` of the
mean next-token log-prob (``toolrl_jax/train/steps.py:token_logp_entropy``'s hidden-states →
chunked log-prob head) over a right-padded batch. It is lowered and compiled on abstract shapes
(``nnx.eval_shape``: no weight is allocated) and only ``lower + compile`` is timed. Scanned layers
compile one layer body whatever the depth (target: 28 layers ≤ 1.5× the 2-layer time); the
unscanned model unrolls every layer. Final line:
``scanned_ratio=<28L/2L> unscanned_ratio=<28L/2L>``.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from toolrl_jax.config import ModelConfig  # noqa: E402
from toolrl_jax.models.decoder import Decoder  # noqa: E402
from toolrl_jax.rl.entropy import hidden_to_logp_entropy  # noqa: E402


def model_config(width: int, layers: int, scan: bool, attention: str) -> ModelConfig:
    heads = max(width // 64, 2)
    return ModelConfig(architecture="qwen2", vocab_size=2048, hidden_size=width,
                       intermediate_size=4 * width, num_layers=layers, num_heads=heads,
                       num_kv_heads=heads // 2, qkv_bias=True, tie_embeddings=False,
                       max_position=4096, rope_theta=1e6, scan_layers=scan, attention=attention)


def compile_seconds(cfg: ModelConfig, remat: str, batch: int, seq: int, repeats: int) -> float:
    """Best of ``repeats`` wall times of ``jit(value_and_grad(loss)).lower(...).compile()``."""
    abstract = nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0), remat=remat))
    graphdef, state = nnx.split(abstract)

    def loss(state, tokens_BT, mask_BT):
        model = nnx.merge(graphdef, state)
        hidden = model.hidden(tokens_BT, mask_BT)
        logp, _ = hidden_to_logp_entropy(hidden[:, :-1], model.lm_head_weight(), tokens_BT[:, 1:],
                                         chunk=128)
        m = mask_BT[:, 1:].astype(jnp.float32)
        return -jnp.sum(logp * m) / jnp.maximum(jnp.sum(m), 1.0)

    step = jax.value_and_grad(loss)
    tokens = jax.ShapeDtypeStruct((batch, seq), jnp.int32)
    best = float("inf")
    for _ in range(repeats):
        # A fresh function object each time: jit's caches are keyed on it, so nothing is reused.
        fn = jax.jit(lambda s, t, m: step(s, t, m))
        start = time.perf_counter()
        fn.lower(state, tokens, tokens).compile()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--layers", type=int, nargs=2, default=[2, 28])
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--remat", default="none", choices=["none", "full", "save_dots"])
    p.add_argument("--attention", default="auto",
                   choices=["auto", "xla", "cudnn", "splash", "reference"])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    print(f"backend: {jax.default_backend()}  width {args.width}  seq {args.seq}  batch "
          f"{args.batch}  remat {args.remat}  attention {args.attention}")
    # Untimed: the first compile of a process pays one-off costs (backend start-up, JAX's
    # tracing caches of library functions) that would otherwise land on whichever case runs first.
    compile_seconds(model_config(args.width, 1, True, args.attention), args.remat, args.batch,
                    args.seq, 1)
    ratios = {}
    for scan in (True, False):
        times = [compile_seconds(model_config(args.width, n, scan, args.attention), args.remat,
                                 args.batch, args.seq, args.repeats) for n in args.layers]
        ratios[scan] = times[1] / times[0]
        label = "scanned  " if scan else "unscanned"
        print(f"{label}  {args.layers[0]:>3} layers {times[0]:7.2f} s   {args.layers[1]:>3} layers "
              f"{times[1]:7.2f} s   ratio {ratios[scan]:.2f}x")
    print(f"scanned_ratio={ratios[True]:.2f} unscanned_ratio={ratios[False]:.2f}")


if __name__ == "__main__":
    main()
