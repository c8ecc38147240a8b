"""The one way to wire a :class:`RolloutEngine`: shapes, stop rules and layout from the config.

Used by the experiment layer (training and evaluation engines), the engine tests and the rollout
benchmark, so every engine stops on the same token ids and places rows the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from toolrl_jax.buckets import RolloutShapes, round_up
from toolrl_jax.config import RolloutConfig
from toolrl_jax.rollout.compiled import CompiledRollout, SamplingParams
from toolrl_jax.rollout.engine import EngineLimits, Executor, RolloutEngine
from toolrl_jax.rollout.layout import RolloutLayout


def eos_ids_of(tokenizer) -> list[int]:
    """End-of-sequence ids a tokenizer declares (its EOS and ``<|endoftext|>``, if it has them)."""
    ids = {getattr(tokenizer, "eos_token_id", None)}
    to_id = getattr(tokenizer, "convert_tokens_to_ids", None)
    if to_id is not None:
        ids.add(to_id("<|endoftext|>"))
    unk = getattr(tokenizer, "unk_token_id", None)
    return sorted(i for i in ids if isinstance(i, int) and i >= 0 and i != unk)


def slot_count(rc: RolloutConfig, rows: int, row_shards: int = 1,
               default_slots: int = 0) -> int:
    """Compiled slots for ``rows`` rows per ``generate`` call: ``rollout.slots`` (0:
    ``default_slots`` when given, else one slot per row so no row ever waits for a slot), never
    more than the rows, rounded up to a multiple of the mesh's row shards."""
    want = rc.slots or default_slots or rows
    return round_up(min(want, rows), row_shards)


def build_engine(model_fn: Callable, rc: RolloutConfig, tokenizer, syntax, execute: Executor, *,
                 rows: int, greedy: bool, seed: int = 0,
                 eos_ids: Sequence[int] | None = None,
                 stop_sequences: Sequence[Sequence[int]] | None = None,
                 compiled_cache: dict | None = None, mesh=None,
                 compute_dtype=None, compact_drain: bool = True,
                 default_slots: int = 0) -> RolloutEngine:
    """A rollout engine for up to ``rows`` rows per ``generate`` call.

    Slots: :func:`slot_count` (``default_slots`` stands in for ``rollout.slots=0``: e.g. an RL
    step's P × G rows while an oversampling round draws more — the extra rows queue, and the
    engine knows it, so warm-up compiles the queue's programs too).

    ``model_fn(params) -> Decoder``. Stop sequences default to the syntax's stop strings
    tokenized, EOS ids to :func:`eos_ids_of`. ``mesh``: slots split over its data × fsdp axes,
    KV heads over tensor (None: one default device). ``compiled_cache`` (a dict) shares compiled
    functions between engines of the same shapes and sampling mode: they take the params as an
    argument, so e.g. every recipe of a comparison reuses one compilation.
    """
    layout = RolloutLayout(mesh)
    slots = slot_count(rc, rows, layout.row_shards, default_slots)
    shapes = RolloutShapes.from_config(rc, batch=slots)
    key = (greedy, shapes, mesh)
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
            pad_id=pad if pad is not None else 0, layout=layout)
        if compiled_cache is not None:
            compiled_cache[key] = compiled
    limits = EngineLimits(rc.max_new_tokens, rc.max_tool_calls, rc.max_result_tokens)
    return RolloutEngine(compiled, tokenizer, syntax, execute, limits, seed=seed,
                         tool_workers=rc.tool_workers, compute_dtype=compute_dtype,
                         queued=slots < rows, compact_drain=compact_drain)
