"""Rollout throughput of Tunix's own ``Sampler`` on a random Qwen2-style model (CPU, fp32).

    /path/to/tunix-venv/bin/python benchmarks/tunix_sampler_run.py [--rounds 5] [--batch 64]
        [--prompt-len 32] [--new-tokens 128] [--layers 4 --width 256 --heads 4 --kv-heads 2
        --head-dim 64 --ffn 1024 --vocab 4096] [--seed 0]

What it measures: wall time of one ``tunix.generate.sampler.Sampler.__call__`` that samples
``--new-tokens`` tokens for each of ``--batch`` prompts of exactly ``--prompt-len`` random token ids
(ids in [5, vocab)) at temperature 1.0 with no top-k / top-p, with a KV cache of exactly
prompt + new tokens. The model is Tunix's ``tunix.models.qwen2.model.Qwen2`` (q/k/v biases, RMSNorm,
SwiGLU, RoPE, grouped-query attention), randomly initialised, fp32 params and activations. One
untimed warm-up call pays the jit compilation (prefill + decode loop); then ``--rounds`` timed
calls, each with a fresh sampling seed (the PRNG key is a traced argument: no recompilation). A
call's time includes Tunix's host-side work around the two jitted programs (text -> ids, building
the sampling state and KV cache, fetching the token buffer, ids -> text), as a user of the API
would pay it.

Tunix stops a row only on an EOS id (and the whole decode loop only once every row is done, or the
buffer is full). The stand-in tokenizer's EOS id is ``vocab`` -- one past the last id the model can
sample -- so no row ever stops early; the script checks that every row really got ``--new-tokens``
new tokens and reports the count it found (``generated_per_row``).

Launched by ``benchmarks/rollout_throughput.py`` with the Tunix virtualenv's interpreter, as
``<tunix python> benchmarks/tunix_sampler_run.py --rounds N ...``; that side parses the LAST line of
stdout, one JSON object::

    {"tunix_version": "0.1.7", "rounds_s": [...], "best_s": x, "tokens": batch*new_tokens,
     "tokens_per_s": tokens/best_s, "generated_per_row": n}

Tunix lives in its own virtualenv (its pinned jax/flax need not match this project's), e.g.::

    python3 -m venv /work/tunix_venv && /work/tunix_venv/bin/pip install google-tunix==0.1.7

This file imports nothing from ``toolrl_jax`` (that venv does not have it). It forces
``JAX_PLATFORMS=cpu`` unless the caller set JAX_PLATFORMS. The model runs on one XLA device
(``jax.devices()[0]``); an inherited ``--xla_force_host_platform_device_count`` is harmless.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _die(msg: str, code: int = 2) -> None:
    print(f"tunix_sampler_run: error: {msg}", file=sys.stderr)
    sys.exit(code)


try:
    import jax
    import numpy as np
    from flax import nnx
except ImportError as e:  # pragma: no cover - environment problem
    _die(f"cannot import jax/flax/numpy ({e}); run this with the Tunix venv's python "
         "(python3 -m venv /path && /path/bin/pip install google-tunix==0.1.7)")

try:
    from tunix.generate import sampler as sampler_lib
    from tunix.models.qwen2 import model as qwen2_lib
except ImportError as e:  # pragma: no cover - environment problem
    _die(f"cannot import tunix ({e}); run this with the Tunix venv's python "
         "(python3 -m venv /path && /path/bin/pip install google-tunix==0.1.7)")


def _tunix_version() -> str:
    try:
        from importlib.metadata import version

        return version("google-tunix")
    except Exception:  # noqa: BLE001 - best effort only
        import tunix

        return str(getattr(tunix, "__version__", "unknown"))


class IdTokenizer:
    """Minimal tokenizer for Tunix's ``TokenizerAdapter``: text is space-separated integer ids.

    Tunix needs ``encode``, ``decode``, ``bos_id``, ``eos_id`` and ``pad_id``. ``bos_id`` is None so
    the sampler prepends nothing (it only adds a BOS when ``bos_id()`` is truthy); ``pad_id`` is 0
    (prompts never contain it, so there is no padding); ``eos_id`` is ``vocab`` -- outside the
    sampled range [0, vocab), so generation never stops early.
    """

    def __init__(self, vocab: int):
        self.vocab = vocab

    def encode(self, text: str, **_: object) -> list[int]:
        return [int(t) for t in text.split()]

    def decode(self, ids, **_: object) -> str:
        return " ".join(str(int(t)) for t in ids)

    def bos_id(self):
        return None

    def eos_id(self) -> int:
        return self.vocab

    def pad_id(self) -> int:
        return 0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="timed calls after one untimed warm-up")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=256, help="hidden size (embed_dim)")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--ffn", type=int, default=1024, help="MLP intermediate size")
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--tied-embedding", action="store_true", help="tie the LM head to the embedding")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, prompts and sampling")
    a = p.parse_args(argv)
    for name in ("rounds", "batch", "prompt_len", "new_tokens", "layers", "width", "heads", "kv_heads",
                 "head_dim", "ffn"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(a, name)})")
    if a.vocab <= 5:
        p.error(f"--vocab must be > 5 (prompt ids are drawn from [5, vocab)); got {a.vocab}")
    if a.heads % a.kv_heads:
        p.error(f"--heads ({a.heads}) must be a multiple of --kv-heads ({a.kv_heads})")
    if a.head_dim % 2:
        p.error(f"--head-dim must be even for RoPE (got {a.head_dim})")
    return a


def build_model(a: argparse.Namespace):
    cfg = qwen2_lib.ModelConfig(
        num_layers=a.layers,
        vocab_size=a.vocab,
        embed_dim=a.width,
        hidden_dim=a.ffn,
        num_heads=a.heads,
        head_dim=a.head_dim,
        num_kv_heads=a.kv_heads,
        rope_theta=a.rope_theta,
        norm_eps=1e-6,
        use_tied_embedding=a.tied_embedding,
        dtype=np.float32,
        param_dtype=np.float32,
    )
    return cfg, qwen2_lib.Qwen2(cfg, rngs=nnx.Rngs(params=a.seed))


def main(argv=None) -> None:
    a = parse_args(argv)
    version = _tunix_version()
    dev = jax.devices()[0]
    print(f"tunix {version}  jax {jax.__version__}  device {dev.platform}:{dev.id} "
          f"({len(jax.devices())} visible)", flush=True)

    cfg, model = build_model(a)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    print(f"model: Qwen2 layers={a.layers} width={a.width} heads={a.heads} kv_heads={a.kv_heads} "
          f"head_dim={a.head_dim} ffn={a.ffn} vocab={a.vocab} tied={a.tied_embedding} "
          f"params={n_params / 1e6:.2f}M fp32", flush=True)

    cache_size = a.prompt_len + a.new_tokens
    tok = IdTokenizer(a.vocab)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sampler = sampler_lib.Sampler(
            transformer=model,
            tokenizer=tok,
            cache_config=sampler_lib.CacheConfig(
                cache_size=cache_size, num_layers=a.layers, num_kv_heads=a.kv_heads,
                head_dim=a.head_dim),
        )

    rng = np.random.default_rng(a.seed)
    prompts_ids = rng.integers(5, a.vocab, size=(a.batch, a.prompt_len), dtype=np.int64)
    prompts = [" ".join(map(str, row)) for row in prompts_ids]

    def generate(seed: int):
        # top_p=1.0 with top_k=None selects Tunix's "top_p" mode, whose fast path is a plain
        # categorical draw over the full vocabulary at `temperature` (no sort, no mask). Without
        # top_p the sampler is greedy whatever the temperature.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Qwen2 has no init_cache of its own
            return sampler(
                prompts,
                max_generation_steps=a.new_tokens,
                max_prompt_length=a.prompt_len,
                echo=False,
                temperature=1.0,
                top_p=1.0,
                top_k=None,
                seed=seed,
            )

    t0 = time.perf_counter()
    try:
        out = generate(a.seed + 1_000_003)
    except Exception as e:
        _die(f"Tunix Sampler call failed: {type(e).__name__}: {e}", code=1)
    print(f"warm-up (compile + 1 run): {time.perf_counter() - t0:.2f}s", flush=True)

    # Verify the output shape of the warm-up call: every row got exactly new_tokens ids, all from
    # the vocabulary, the prompt is what we sent, and the draw is not greedy-degenerate.
    def check(out) -> tuple[int, np.ndarray]:
        lens = [len(t) for t in out.tokens]
        if len(lens) != a.batch:
            _die(f"sampler returned {len(lens)} rows, expected {a.batch}", code=1)
        if min(lens) != a.new_tokens or max(lens) != a.new_tokens:
            print(f"WARNING: new tokens per row min={min(lens)} max={max(lens)} "
                  f"(expected {a.new_tokens})", file=sys.stderr, flush=True)
        toks = np.concatenate([np.asarray(t) for t in out.tokens])
        if toks.size and (toks.min() < 0 or toks.max() >= a.vocab):
            _die(f"sampled ids outside [0, {a.vocab}): min={toks.min()} max={toks.max()}", code=1)
        return min(lens), toks

    generated, toks = check(out)
    if not np.array_equal(np.asarray(out.padded_prompt_tokens), prompts_ids):
        _die("the sampler's padded prompt differs from the prompt ids sent (tokenizer mismatch?)",
             code=1)
    n_pad = int((toks == 0).sum())
    print(f"check: {a.batch} rows x {generated} new tokens; {len(np.unique(toks))} distinct ids "
          f"sampled; pad id 0 sampled {n_pad}x; EOS id {tok.eos_id()} is out of vocab", flush=True)

    rounds = []
    for r in range(a.rounds):
        t0 = time.perf_counter()
        out = generate(a.seed + 1 + r)  # Sampler.__call__ ends in jax.device_get: already synced
        dt = time.perf_counter() - t0
        rounds.append(dt)
        g, _ = check(out)
        generated = min(generated, g)
        print(f"round {r + 1}/{a.rounds}: {dt:.3f}s  "
              f"({a.batch * a.new_tokens / dt:.0f} tok/s)", flush=True)

    best = min(rounds)
    tokens = a.batch * a.new_tokens
    print(json.dumps({
        "tunix_version": version,
        "rounds_s": [round(x, 4) for x in rounds],
        "best_s": round(best, 4),
        "tokens": tokens,
        "tokens_per_s": round(tokens / best, 1),
        "generated_per_row": generated,
    }), flush=True)


if __name__ == "__main__":
    main()
