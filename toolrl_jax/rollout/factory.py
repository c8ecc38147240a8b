"""The one way to wire a :class:`RolloutEngine`: shapes, stop rules and lanes from the config.

Used by the experiment layer (training and evaluation engines), the engine tests and the rollout
benchmark, so every engine stops on the same token ids and splits rows the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax

from toolrl_jax.buckets import RolloutShapes
from toolrl_jax.config import RolloutConfig
from toolrl_jax.rollout.compiled import CompiledRollout, SamplingParams
from toolrl_jax.rollout.engine import EngineLimits, Executor, RolloutEngine


def eos_ids_of(tokenizer) -> list[int]:
    """End-of-sequence ids a tokenizer declares (its EOS and ``<|endoftext|>``, if it has them)."""
    ids = {getattr(tokenizer, "eos_token_id", None)}
    to_id = getattr(tokenizer, "convert_tokens_to_ids", None)
    if to_id is not None:
        ids.add(to_id("<|endoftext|>"))
    unk = getattr(tokenizer, "unk_token_id", None)
    return sorted(i for i in ids if isinstance(i, int) and i >= 0 and i != unk)


def lane_devices(lanes: int, rows: int) -> list | None:
    """The local devices of ``rollout.lanes`` lanes (None: one lane on the default device)."""
    if lanes <= 1:
        return None
    local = jax.local_devices()
    if lanes > len(local):
        raise ValueError(f"rollout.lanes={lanes} needs as many local devices; this process has "
                         f"{len(local)} (on CPU set XLA_FLAGS=--xla_force_host_platform_device_"
                         f"count={lanes})")
    if rows % lanes:
        raise ValueError(f"rollout.lanes={lanes} must divide the {rows}-row rollout batch "
                         "(eval: eval.prompts_per_batch * samples)")
    return local[:lanes]


def build_engine(model_fn: Callable, rc: RolloutConfig, tokenizer, syntax, execute: Executor, *,
                 rows: int, greedy: bool, seed: int = 0,
                 eos_ids: Sequence[int] | None = None,
                 stop_sequences: Sequence[Sequence[int]] | None = None,
                 compiled_cache: dict | None = None) -> RolloutEngine:
    """A rollout engine for ``rows`` rows per ``generate`` call.

    ``model_fn(params) -> Decoder``. Stop sequences default to the syntax's stop strings
    tokenized, EOS ids to :func:`eos_ids_of`. ``compiled_cache`` (a dict) shares compiled
    functions between engines of the same shapes and sampling mode: they take the params as an
    argument, so e.g. every recipe of a comparison reuses one compilation.
    """
    devices = lane_devices(rc.lanes, rows)
    shapes = RolloutShapes.from_config(rc, batch=rows // max(rc.lanes, 1))
    key = (greedy, shapes)
    compiled = compiled_cache.get(key) if compiled_cache is not None else None
    if compiled is None:
        if stop_sequences is None:
            stop_sequences = [tokenizer.encode(s, add_special_tokens=False)
                              for s in syntax.stop_strings]
        pad = getattr(tokenizer, "pad_token_id", None)
        compiled = CompiledRollout(
            model_fn, shapes, eos_ids=list(eos_ids_of(tokenizer) if eos_ids is None else eos_ids),
            stop_sequences=[list(s) for s in stop_sequences],
            sampling=SamplingParams(rc.temperature, rc.top_k, rc.top_p, greedy=greedy),
            pad_id=pad if pad is not None else 0)
        if compiled_cache is not None:
            compiled_cache[key] = compiled
    limits = EngineLimits(rc.max_new_tokens, rc.max_tool_calls, rc.max_result_tokens)
    return RolloutEngine(compiled, tokenizer, syntax, execute, limits, seed=seed, devices=devices)
