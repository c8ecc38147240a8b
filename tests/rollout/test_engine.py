"""Rollout engine: token-exact trajectories, logprob consistency, no recompiles, reproducibility."""

import dataclasses
import threading
import time

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from toolrl_jax.buckets import RolloutShapes
from toolrl_jax.config import RolloutConfig
from toolrl_jax.models.decoder import init_decoder
from toolrl_jax.rollout.compiled import stop_sequence_table
from toolrl_jax.rollout.engine import RolloutEngine
from toolrl_jax.rollout.factory import build_engine
from toolrl_jax.rollout.sampling import logprob_and_entropy
from toolrl_jax.testing.fake_tools import CompileCounter, EndTokenSyntax, echo_executor
from toolrl_jax.testing.tiny import tiny_qwen2_config, write_tiny_tokenizer
from toolrl_jax.types import ToolStatus


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    import transformers

    path = tmp_path_factory.mktemp("tok")
    write_tiny_tokenizer(str(path), vocab_size=128)
    return transformers.AutoTokenizer.from_pretrained(str(path))


@pytest.fixture(scope="module")
def setup(tokenizer):
    return _make_setup(tokenizer, cache_windows=4)


def _make_setup(tokenizer, cache_windows, slots=0, mesh=None, executor=echo_executor, rows=6,
                default_slots=0):
    cfg = tiny_qwen2_config(vocab_size=len(tokenizer), num_layers=2)
    model = init_decoder(cfg, seed=0)
    graphdef, params = nnx.split(model)
    # Any of ~40 single-token strings ends a "call" (~15% per step under a random model), so
    # rows call tools several times.
    end_ids = [i for i in range(60, 100)
               if tokenizer.encode(tokenizer.decode([i]), add_special_tokens=False) == [i]]
    assert len(end_ids) > 20
    rc = RolloutConfig(prompts_per_step=3, group_size=2, max_prompt_len=32, max_new_tokens=48,
                       max_cache_len=176, segment_len=8, max_tool_calls=3, max_result_tokens=12,
                       length_bucket=8, temperature=1.0, cache_windows=cache_windows, slots=slots)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    syntax = EndTokenSyntax([tokenizer.decode([i]) for i in end_ids])
    engine = build_engine(lambda p: nnx.merge(graphdef, p), rc, tokenizer, syntax, executor,
                          rows=rows, greedy=False, seed=1,
                          eos_ids=[eos], stop_sequences=[[i] for i in end_ids], mesh=mesh,
                          default_slots=default_slots)
    return model, params, engine


def _prompts(tokenizer, texts):
    return [tokenizer.encode(t, add_special_tokens=False) for t in texts]


PROMPTS = ["What is 12 * 7?", "Answer <python>", "print(84) result"]


def test_multi_turn_logprobs_match_full_forward(setup, tokenizer):
    model, params, engine = setup
    trajs = engine.generate(params, _prompts(tokenizer, PROMPTS), group_size=2)
    assert len(trajs) == 6
    calls = [t.num_calls for t in trajs]
    assert sum(calls) >= 3 and max(calls) >= 2, calls  # multi-turn rollouts happened
    result_lens = {c.result_span[1] - c.result_span[0] for t in trajs for c in t.calls}
    assert len(result_lens) > 1  # tool results of different lengths
    assert _check_logprobs_match_full_forward(model, trajs) == sum(t.num_generated
                                                                for t in trajs)


def test_trajectory_layout_is_token_exact(setup, tokenizer):
    _, params, engine = setup
    prompts = _prompts(tokenizer, PROMPTS)
    for t in engine.generate(params, prompts, group_size=2):
        assert list(t.tokens[: t.prompt_len]) == prompts[t.prompt_id]
        assert t.num_generated <= 48
        for k, c in enumerate(t.calls):
            s, e = c.result_span
            assert t.loss_mask[s:e].sum() == 0 and (t.segment_ids[s:e] == -1).all()
            assert c.status == ToolStatus.OK
            # The call's text is model-sampled and closes segment k.
            assert t.loss_mask[c.call_span[1] - 1] == 1 and t.segment_ids[c.call_span[1] - 1] == k
        model_segs = t.segment_ids[t.loss_mask == 1]
        assert (np.diff(model_segs) >= 0).all()
        assert ((t.post_tool_mask == 1) == (t.segment_ids >= 1)).all()


def test_no_recompiles_in_steady_state(setup, tokenizer):
    _, params, engine = setup
    assert engine.shapes.kv_windows == (48, 88, 136, 176)  # several windows are in play
    assert engine.shapes.extend_widths == (16, 32)
    # One slot per row: no queue, so one (whole-batch) append batch, no evicted rows, no drain.
    assert engine.append_batches == (6,) and not engine.queued and not engine.drain_batches
    # init + append at each result width x window (the prompt width, 32 in a 48 window, is one
    # of them) + decode per window
    assert engine.warmup(params) == 1 + 2 * 4 + 4
    used, widths = set(), set()
    real_decode, real_append = engine.compiled.decode_segment, engine.compiled.append

    def spy(*args, kv_len):
        used.add(kv_len)
        return real_decode(*args, kv_len=kv_len)

    def spy_append(*args, kv_len):
        widths.add(args[4].shape[1])
        return real_append(*args, kv_len=kv_len)

    engine.compiled.decode_segment, engine.compiled.append = spy, spy_append
    try:
        for texts in (PROMPTS, ["1", "a much longer prompt here", "x y"],
                      ["<answer>", "7 * 8 = ?", "zz"]):
            with CompileCounter() as counter:
                engine.generate(params, _prompts(tokenizer, texts), group_size=2)
            assert counter.count == 0
    finally:
        engine.compiled.decode_segment, engine.compiled.append = real_decode, real_append
    assert len(used) >= 2, used  # the rollouts did move between windows
    # prompts (32) and short and long tool results took every append width
    assert widths == {16, 32}, widths


def _slow_echo(seed):
    """echo_executor with a random 0-30 ms delay per call: results arrive out of order, while
    the other slots decode (rows are parked)."""
    rng = np.random.default_rng(seed)

    def run(calls):
        time.sleep(float(rng.uniform(0, 0.03)))
        return echo_executor(calls)

    return run


def test_every_parked_row_has_its_call_in_flight_at_once(setup, tokenizer):
    # Each row's first call waits until every calling row's first call has started
    # (a barrier): that completes only if no call waits for an engine thread. With the
    # threads capped below the rows (tool_workers=2) the barrier breaks — the control.
    _, params, engine = setup
    prompts = _prompts(tokenizer, PROMPTS)
    ref = engine.generate(params, prompts, group_size=2)
    callers = sum(t.num_calls > 0 for t in ref)
    assert callers >= 4, callers

    def barrier_executor(timeout_s):
        barrier, lock, first = threading.Barrier(callers, timeout=timeout_s), threading.Lock(), []

        def run(calls):
            with lock:  # the first `callers` calls are one per row: each waits here
                wait = len(first) < callers
                first.append(wait)
            if wait:
                barrier.wait()  # BrokenBarrierError -> the engine records an error result
            return echo_executor(calls)
        return run

    saved = engine.execute, engine.tool_workers
    try:
        engine.execute = barrier_executor(60.0)
        trajs = engine.generate(params, prompts, group_size=2)
        assert all(c.status == ToolStatus.OK for t in trajs for c in t.calls)
        for x, y in zip(ref, trajs):  # the waits changed timing only
            np.testing.assert_array_equal(x.tokens, y.tokens)
        engine.execute, engine.tool_workers = barrier_executor(1.0), 2
        capped = engine.generate(params, prompts, group_size=2)
        assert any(c.status == ToolStatus.ERROR for t in capped for c in t.calls)
    finally:
        engine.execute, engine.tool_workers = saved


def test_tool_time_is_split_into_own_run_time_and_queue_wait(setup, tokenizer):
    # Each call takes >= 20 ms of wall time in the engine's thread but reports 5 ms of its own:
    # tools_s sums the reported run times exactly; the rest is counted as queueing.
    _, params, engine = setup

    def slow_reporting_5ms(calls):
        time.sleep(0.02)
        return [dataclasses.replace(r, elapsed_s=0.005) for r in echo_executor(calls)]

    saved = engine.execute
    try:
        engine.execute = slow_reporting_5ms
        before = dataclasses.replace(engine.stats)
        trajs = engine.generate(params, _prompts(tokenizer, PROMPTS), group_size=2)
    finally:
        engine.execute = saved
    calls = sum(t.num_calls for t in trajs)
    assert calls >= 4
    run_s = engine.stats.tools_s - before.tools_s
    queue_s = engine.stats.tools_queue_s - before.tools_queue_s
    assert run_s == pytest.approx(0.005 * calls, rel=1e-6)
    assert queue_s >= 0.015 * calls


def test_refills_and_parked_rows_keep_trajectories_and_logprobs_exact(setup, tokenizer):
    # 2 slots for 12 rows: rows wait for a slot, are prefilled as others finish, park on calls
    # that return out of order. Same trajectories as one slot per row, token for token, and the
    # recorded log-probs equal a full forward of the final sequences.
    model, params, engine = setup
    _, _, two_slots = _make_setup(tokenizer, cache_windows=4, slots=2, executor=_slow_echo(0))
    assert two_slots.shapes.batch == 2
    prompts = _prompts(tokenizer, PROMPTS + ["7 * 8 = ?", "x y", "<answer>"])
    ref = engine.generate(params, prompts[:3], group_size=2) + engine.generate(
        params, prompts[3:], group_size=2, prompt_ids=[3, 4, 5])
    trajs = two_slots.generate(params, prompts, group_size=2)
    st = two_slots.stats
    # every row got a slot once, and rows that parked on a call while others waited gave their
    # slot up and came back with their whole context
    assert st.refills > 12 and st.tool_calls >= 6
    for x, y in zip(ref, trajs):
        assert (x.prompt_id, x.sample_id) == (y.prompt_id, y.sample_id)
        np.testing.assert_array_equal(x.tokens, y.tokens)
        np.testing.assert_allclose(x.old_logp, y.old_logp, atol=1e-5)
    _check_logprobs_match_full_forward(model, trajs)


def _check_logprobs_match_full_forward(model, trajs) -> int:
    """The recorded log-prob and entropy of every sampled token equal a full forward of the
    final sequences (<= 1e-4); returns how many tokens were checked."""
    longest = max(len(t.tokens) for t in trajs)
    toks = np.zeros((len(trajs), longest), np.int32)
    mask = np.zeros_like(toks)
    for i, t in enumerate(trajs):
        toks[i, : len(t.tokens)] = t.tokens
        mask[i, : len(t.tokens)] = 1
    logits = model(jnp.asarray(toks), jnp.asarray(mask))
    logp_all, ent_all = logprob_and_entropy(logits.reshape(-1, logits.shape[-1]))
    logp_all = np.asarray(logp_all).reshape(*toks.shape, -1)
    ent_all = np.asarray(ent_all).reshape(toks.shape)
    checked = 0
    for i, t in enumerate(trajs):
        pos = np.nonzero(t.loss_mask)[0]
        assert (pos >= t.prompt_len).all()
        np.testing.assert_allclose(t.old_logp[pos], logp_all[i, pos - 1, t.tokens[pos]],
                                   atol=1e-4)
        np.testing.assert_allclose(t.entropy[pos], ent_all[i, pos - 1], atol=1e-4)
        checked += len(pos)
    return checked


def test_drain_tiers_are_successive_quarters_that_split_over_the_shards():
    from toolrl_jax.rollout.engine import drain_tiers

    assert drain_tiers(32, 1) == (8, 2)
    assert drain_tiers(64, 2) == (16, 4)  # 1 would not split over 2 shards
    assert drain_tiers(16, 1) == (4, 1)
    assert drain_tiers(8, 4) == ()  # 2 slots cannot give 4 shards a row each
    assert drain_tiers(6, 1) == ()


def test_drain_moves_the_last_rows_down_the_tiers(setup, tokenizer):
    # 16 slots for 24 rows: once no row waits the running rows move into a 4-slot cache, then a
    # 1-slot one (take_slots, tier by tier) and finish there; trajectories are unchanged,
    # nothing recompiles.
    model, params, engine = setup
    _, _, slots16 = _make_setup(tokenizer, cache_windows=4, slots=16, executor=_slow_echo(1),
                                rows=24)
    assert slots16.drain_batches == (4, 1)
    slots16.warmup(params)
    texts = PROMPTS + ["7 * 8 = ?", "x y", "<answer>"]
    prompts = _prompts(tokenizer, texts + [t + " again" for t in texts])
    ref = []
    for k in range(0, 12, 3):
        ref += engine.generate(params, prompts[k:k + 3], group_size=2,
                               prompt_ids=[k, k + 1, k + 2])
    with CompileCounter() as counter:
        trajs = slots16.generate(params, prompts, group_size=2)
    assert counter.count == 0
    assert slots16.stats.compactions == 2
    for x, y in zip(ref, trajs):
        np.testing.assert_array_equal(x.tokens, y.tokens)
        np.testing.assert_allclose(x.old_logp, y.old_logp, atol=1e-5)
    _check_logprobs_match_full_forward(model, trajs)


def test_no_recompiles_with_refills(tokenizer):
    _, params, engine = _make_setup(tokenizer, cache_windows=4, slots=2)
    assert engine.queued and engine.append_batches == (1, 2)
    # init + append per batch at each result width x window + evicted rows' context per window
    # + decode per window (2 slots: no quarter-size drain cache)
    assert engine.warmup(params) == 1 + 2 * (2 * 4) + 4 + 4
    for texts in (PROMPTS, ["1", "a much longer prompt here", "x y", "zz"]):
        with CompileCounter() as counter:
            engine.generate(params, _prompts(tokenizer, texts), group_size=2)
        assert counter.count == 0


def test_cache_windows_do_not_change_trajectories(setup, tokenizer):
    model, params, engine = setup
    _, _, whole_cache = _make_setup(tokenizer, cache_windows=1)
    assert whole_cache.shapes.kv_windows == (176,)
    prompts = _prompts(tokenizer, PROMPTS)
    for a, b in zip(engine.generate(params, prompts, group_size=2),
                    whole_cache.generate(params, prompts, group_size=2)):
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_allclose(a.old_logp, b.old_logp, atol=1e-5)
        np.testing.assert_allclose(a.entropy, b.entropy, atol=1e-5)


def test_kv_windows_are_evenly_spaced_bucket_multiples():
    from toolrl_jax.buckets import kv_windows

    assert kv_windows(1024, 4, 32) == (256, 512, 768, 1024)
    assert kv_windows(208, 8, 16) == (32, 64, 80, 112, 144, 160, 192, 208)
    assert kv_windows(48, 8, 32) == (32, 48)  # rounding collapses duplicates
    assert kv_windows(100, 1, 8) == (100,)
    shapes = RolloutShapes(batch=1, prefill_len=8, extend_len=8, segment_len=8, cache_len=208,
                           kv_windows=kv_windows(208, 8, 16))
    assert [shapes.kv_window(n) for n in (1, 32, 33, 208, 500)] == [32, 32, 64, 208, 208]
    assert shapes.extend_widths == (4, 8) and [shapes.extend_width(n) for n in (1, 5)] == [4, 8]
    with pytest.raises(ValueError, match="must ascend and end at cache_len"):
        RolloutShapes(batch=1, prefill_len=8, extend_len=8, segment_len=8, cache_len=64,
                      kv_windows=(32, 48))


def test_reproducible_and_independent_of_batch_position(setup, tokenizer):
    _, params, engine = setup
    prompts = _prompts(tokenizer, PROMPTS)
    a = engine.generate(params, prompts, group_size=2)
    b = engine.generate(params, prompts, group_size=2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.tokens, y.tokens)
    # Same prompt id, other batch position and other batch-mates: same trajectory.
    c = engine.generate(params, [prompts[2], prompts[0]], group_size=2, prompt_ids=[2, 0])
    by_key = {(t.prompt_id, t.sample_id): t for t in a}
    for t in c:
        np.testing.assert_array_equal(t.tokens, by_key[(t.prompt_id, t.sample_id)].tokens)


def test_stop_sequence_table_matches_multi_token_sequences():
    table, lengths, width = stop_sequence_table([[5, 6, 7], [9]])
    assert width == 3 and lengths.tolist() == [3, 1]
    assert table.tolist() == [[5, 6, 7], [-1, -1, 9]]


def test_prompt_too_long_is_a_clear_error(setup):
    _, params, engine = setup
    with pytest.raises(ValueError, match="has 40 tokens; allowed 1..32"):
        engine.generate(params, [[3] * 40], group_size=1)


class _AlwaysInvalid(EndTokenSyntax):
    """Every call the model closes is malformed (like invalid JSON or an unknown tool)."""

    def parse_last_call(self, text):
        from toolrl_jax.tools.base import InvalidCall

        if not text.endswith(self.end_texts):
            return None
        return InvalidCall("invalid call: unknown tool 'echo'", text, 0, len(text), name="echo")


def test_malformed_calls_become_invalid_call_results_shown_to_the_model(setup, tokenizer):
    _, params, engine = setup
    bad = RolloutEngine(engine.compiled, tokenizer, _AlwaysInvalid(engine.syntax.end_texts),
                        echo_executor, engine.limits, seed=1)
    trajs = bad.generate(params, _prompts(tokenizer, PROMPTS), group_size=2)
    calls = [c for t in trajs for c in t.calls]
    assert calls and all(c.status == ToolStatus.INVALID_CALL for c in calls)
    for t in trajs:
        for c in t.calls:
            s, e = c.result_span
            shown = tokenizer.decode(t.tokens[s:e])
            assert "invalid call" in shown  # the model sees why (truncated to max_result_tokens)
            assert c.output == "invalid call: unknown tool 'echo'"
            assert t.loss_mask[s:e].sum() == 0


def test_sharded_slots_hold_their_rows_and_heads_and_match_one_device(setup, tokenizer):
    # data=2, fsdp=2, tensor=2: each cache shard holds B/4 slots and KV/2 heads, no replicas;
    # params in a trainer's fsdp layout are resharded for decoding.
    import jax

    from toolrl_jax.config import MeshConfig
    from toolrl_jax.sharding import make_mesh, state_shardings

    model, params, one_device = setup
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    fsdp8 = make_mesh(MeshConfig(data=1, fsdp=8, tensor=1))
    trainer_params = jax.device_put(params, state_shardings(params, fsdp8))
    _, _, sharded = _make_setup(tokenizer, cache_windows=4, mesh=mesh)
    b = sharded.shapes.batch
    assert b == 8  # 6 rows, rounded up to the 4 row shards
    cache, _ = sharded.compiled.init_cache(params)
    kv, hd = model.cfg.num_kv_heads, model.cfg.resolved_head_dim
    for arr, shard in ((cache.k[0], (b // 4, kv // 2, hd, 176)),
                       (cache.v[1], (b // 4, kv // 2, 176, hd))):
        assert arr.sharding.shard_shape(arr.shape) == shard
        blocks = [tuple((s.start, s.stop) for s in idx[:2])
                  for idx in arr.sharding.devices_indices_map(arr.shape).values()]
        assert len(set(blocks)) == len(blocks) == 8  # every device a different block
    prompts = _prompts(tokenizer, PROMPTS)
    a = one_device.generate(params, prompts, group_size=2)
    c = sharded.generate(trainer_params, prompts, group_size=2)
    assert sum(t.num_calls for t in c) >= 3
    for x, y in zip(a, c):
        assert (x.prompt_id, x.sample_id) == (y.prompt_id, y.sample_id)
        np.testing.assert_array_equal(x.tokens, y.tokens)
        np.testing.assert_allclose(x.old_logp, y.old_logp, atol=1e-5)
        assert [c.status for c in x.calls] == [c.status for c in y.calls]


def test_a_call_to_an_answer_function_ends_the_row_unexecuted(setup, tokenizer):
    # Function-calling items: a call of the item's own function is the answer. It is recorded
    # (name, arguments, call span) with an empty result, never run, and ends the row.
    _, params, engine = setup
    ran = []

    def counting(calls):
        ran.extend(calls)
        return echo_executor(calls)

    fc = RolloutEngine(engine.compiled, tokenizer, engine.syntax, counting, engine.limits, seed=1)
    prompts = _prompts(tokenizer, PROMPTS)
    trajs = fc.generate(params, prompts, group_size=2, answer_calls=[["echo"], [], ["other"]])
    plain = engine.generate(params, prompts, group_size=2)
    for t, p in zip(trajs, plain):
        if t.prompt_id == 0 and p.num_calls:
            assert t.num_calls == 1 and t.stop_reason.value == "answer"
            (c,) = t.calls
            assert c.name == "echo" and c.output == "" and c.result_span[0] == c.result_span[1]
            assert c.call_span[1] == len(t.tokens)  # nothing after the answer call
        else:  # other prompts' calls still run, as before
            np.testing.assert_array_equal(t.tokens, p.tokens)
    assert len(ran) == sum(t.num_calls for t in trajs if t.prompt_id != 0)


def test_slot_count_and_an_oversampled_round_that_queues(tokenizer):
    from toolrl_jax.config import RLConfig
    from toolrl_jax.rl.recipes import make_recipe, rollout_rows
    from toolrl_jax.rollout.factory import slot_count

    rc = RolloutConfig(prompts_per_step=8, group_size=8)
    assert slot_count(rc, 96) == 96  # one slot per row
    assert slot_count(rc, 96, default_slots=64) == 64  # the step's P x G; 32 rows queue
    assert slot_count(rc, 48, default_slots=64) == 48  # never more slots than rows
    assert slot_count(dataclasses.replace(rc, slots=32), 96, default_slots=64) == 32
    assert slot_count(rc, 96, row_shards=5, default_slots=64) == 65
    # AutoTool's preset oversamples 1.5x: its first round draws 12 prompts of 8 rows.
    recipe = make_recipe(RLConfig(recipe="autotool"), group_size=8, max_new_tokens=16)
    assert rollout_rows(recipe, 8, 8) == 96
    assert rollout_rows(make_recipe(RLConfig(recipe="grpo"), group_size=8, max_new_tokens=16),
                        8, 8) == 64
    # Told the largest call, the engine knows rows will queue: warm-up then compiles the
    # queue's programs (small refill batches, evicted rows' contexts, drain tiers).
    _, params, engine = _make_setup(tokenizer, cache_windows=2, rows=6, default_slots=4)
    assert engine.queued and engine.shapes.batch == 4 and engine.drain_batches == (1,)
    engine.warmup(params)
    prompts = _prompts(tokenizer, PROMPTS)
    with CompileCounter() as counter:
        trajs = engine.generate(params, prompts, group_size=2)
    assert counter.count == 0 and len(trajs) == 6
