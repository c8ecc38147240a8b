"""Peak temp memory of naive vs chunked logprob + entropy (forward and backward), and exactness.

    python benchmarks/entropy_memory.py                       # Qwen2.5-0.5B head: B=4 T=2048
    python benchmarks/entropy_memory.py --chunk 128 --vocab-chunk 8192

Every variant is compiled as ``value_and_grad`` of ``Σ 0.7·logp + 1.3·H`` w.r.t. the hidden
states and the LM head, and the peak temp bytes come from XLA's compiled memory analysis (compile
only: nothing of full size runs, so this works on a CPU). Variants: the naive reference (full
``[B, T, V]`` fp32 logits), T-chunks alone, and T-chunks + V-chunks; ``--chunk`` and
``--vocab-chunk`` default to the shipped config (``train.logit_chunk``, ``rl.vocab_chunk``).

Exactness is measured by executing at ``--diff-batch`` x ``--diff-seq`` (same D, V; a full-size
naive run needs tens of GB): max |chunked - naive| for values and gradients, and, because at
V = 152k fp32 rounding of the naive path itself is ~1e-5, each path's error against a float64
NumPy reference too.

Expected: chunked peak temp <= 1/8 of naive; values within 1e-5 and gradients within 1e-4 of the
naive fp32 path (or, for values, no further from float64 than the naive path is).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from toolrl_jax.config.rl import RLConfig
from toolrl_jax.config.schema import TrainConfig
from toolrl_jax.rl.entropy import hidden_to_logp_entropy, logits_to_logp_entropy


def objective(logp_BT, ent_BT):
    return jnp.sum(0.7 * logp_BT) + jnp.sum(1.3 * ent_BT)


def make_fns(chunk: int, vocab_chunk: int):
    def naive(h, w, t):
        logits = jnp.einsum("btd,dv->btv", h, w, preferred_element_type=jnp.float32)
        return logits_to_logp_entropy(logits, t)

    def chunked(h, w, t):
        return hidden_to_logp_entropy(h, w, t, chunk=chunk, vocab_chunk=vocab_chunk)

    def fwd_bwd(fn):
        def f(h, w, t):
            (value, grads) = jax.value_and_grad(lambda h, w: objective(*fn(h, w, t)), (0, 1))(h, w)
            return value, grads
        return f

    return naive, chunked, fwd_bwd


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def float64_reference(h, w, t):
    z = np.asarray(h, np.float64) @ np.asarray(w, np.float64)
    m = z.max(-1, keepdims=True)
    e = np.exp(z - m)
    s0 = e.sum(-1)
    lse = m[..., 0] + np.log(s0)
    p = e / s0[..., None]
    ent = lse - (p * z).sum(-1)
    logp = np.take_along_axis(z, np.asarray(t)[..., None], -1)[..., 0] - lse
    return logp, ent


def max_abs(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(a, b, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--dim", type=int, default=896)
    ap.add_argument("--vocab", type=int, default=151_936)
    ap.add_argument("--chunk", type=int, default=TrainConfig().logit_chunk,
                    help="T-chunk (train.logit_chunk)")
    ap.add_argument("--vocab-chunk", type=int, default=RLConfig().vocab_chunk,
                    help="V-chunk (rl.vocab_chunk)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--diff-batch", type=int, default=2)
    ap.add_argument("--diff-seq", type=int, default=64)
    args = ap.parse_args()
    jax.config.update("jax_default_matmul_precision", "highest")
    dt = jnp.dtype(args.dtype)
    B, T, D, V = args.batch, args.seq, args.dim, args.vocab
    print(f"backend={jax.default_backend()} devices={jax.device_count()} "
          f"cpus={os.cpu_count()} dtype={args.dtype}")
    print(f"shapes: B={B} T={T} D={D} V={V}; full fp32 logits alone = {mib(B * T * V * 4)}")

    h = jax.ShapeDtypeStruct((B, T, D), dt)
    w = jax.ShapeDtypeStruct((D, V), dt)
    t = jax.ShapeDtypeStruct((B, T), jnp.int32)
    naive, chunked_t, fwd_bwd = make_fns(args.chunk, 0)
    _, chunked_tv, _ = make_fns(args.chunk, args.vocab_chunk)
    variants = {"naive": naive, f"chunk T={args.chunk}": chunked_t,
                f"chunk T={args.chunk} V={args.vocab_chunk}": chunked_tv}
    temps = {}
    for name, fn in variants.items():
        t0 = time.perf_counter()
        mem = jax.jit(fwd_bwd(fn)).lower(h, w, t).compile().memory_analysis()
        temps[name] = mem.temp_size_in_bytes
        ratio = f"ratio {temps[name] / temps['naive']:.4f} (1/{temps['naive'] / temps[name]:.1f})"
        print(f"{name:28s} fwd+bwd temp {mib(mem.temp_size_in_bytes):>13s}  "
              f"args {mib(mem.argument_size_in_bytes)}  out {mib(mem.output_size_in_bytes)}  "
              f"{ratio}  [compiled in {time.perf_counter() - t0:.1f}s]")
    best = min(v for k, v in temps.items() if k != "naive") / temps["naive"]
    shipped = temps[list(variants)[-1]] / temps["naive"]
    print(f"peak temp ratio at the shipped defaults = {shipped:.4f}; best = {best:.4f}; "
          f"target <= 1/8: {'OK' if shipped <= 1 / 8 else 'FAIL'}")

    # Exactness, executed at a smaller shape (same D, V).
    b, s = args.diff_batch, args.diff_seq
    key = jax.random.split(jax.random.PRNGKey(0), 3)
    hx = jax.random.normal(key[0], (b, s, D), jnp.float32).astype(dt)
    wx = (jax.random.normal(key[1], (D, V), jnp.float32) * D**-0.5 * 4).astype(dt)
    tx = jax.random.randint(key[2], (b, s), 0, V)
    small_chunk = min(args.chunk, s)
    ref64 = float64_reference(hx, wx, tx)
    naive_s, _, _ = make_fns(small_chunk, 0)
    val_n = jax.jit(naive_s)(hx, wx, tx)
    grad_n = jax.jit(fwd_bwd(naive_s))(hx, wx, tx)[1]
    gscale = max(float(jnp.max(jnp.abs(g))) for g in grad_n)
    print(f"exactness, executed at B={b} T={s} D={D} V={V} chunk={small_chunk} "
          f"(max|grad| = {gscale:.2e}, mean entropy = {float(np.mean(val_n[1])):.3f}):")
    err_n = max_abs(val_n, ref64)
    print(f"  naive fp32 vs float64: max|Δvalue| = {err_n:.2e}")
    for vc in (0, args.vocab_chunk):
        _, fn, _ = make_fns(small_chunk, vc)
        val_c = jax.jit(fn)(hx, wx, tx)
        grad_c = jax.jit(fwd_bwd(fn))(hx, wx, tx)[1]
        dv, dg, err_c = max_abs(val_c, val_n), max_abs(grad_c, grad_n), max_abs(val_c, ref64)
        ok_v = "OK" if dv <= 1e-5 else ("OK: fp32 noise, closer to float64 than naive"
                                        if err_c <= err_n else "FAIL")
        print(f"  chunked V={vc:<6d} vs naive: max|Δvalue| = {dv:.2e} (target 1e-5: {ok_v}), "
              f"max|Δgrad| = {dg:.2e} (target 1e-4: {'OK' if dg <= 1e-4 else 'FAIL'}); "
              f"vs float64: max|Δvalue| = {err_c:.2e}")


if __name__ == "__main__":
    main()
