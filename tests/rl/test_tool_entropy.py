"""Segment entropy and ΔH at tool boundaries, with the edge cases pinned."""

import jax
import jax.numpy as jnp
import numpy as np

from toolrl_jax.rl.tool_entropy import (
    call_entropy_deltas,
    call_mask_from_spans,
    segment_entropy,
    tool_entropy_diagnostics,
)

K = 2
_ = -1  # non-model token (prompt / tool result / padding)

# Hand-built layout, T = 10. P = prompt, c = call tokens, R = tool result.
SEG = np.array([
    # P  P  seg0 ...   (c  c)  R  R  seg1 ...
    [_, _, 0, 0, 0, 0, _, _, 1, 1],  # row 0: one call, answer after it
    [_, _, 0, 0, 0, 0, 0, 0, _, _],  # row 1: no call (direct answer), padded
    [_, _, 0, 0, 0, 0, _, _, _, _],  # row 2: one call at the budget end -> empty segment 1
    [_, 0, 0, 1, 1, _, 1, 2, _, _],  # row 3: two calls, results at t=5 (1 tok) and after t=6
])
ENT = np.array([
    [9, 9, 1, 2, 3, 2, 9, 9, 0.5, 0.5],  # seg0 mean 2, seg1 mean 0.5 -> ΔH = -1.5
    [9, 9, 1, 1, 1, 1, 1, 1, 9, 9],
    [9, 9, 2, 2, 2, 2, 9, 9, 9, 9],
    [9, 1, 1, 2, 4, 9, 3, 1, 9, 9],  # seg0 = 1, seg1 = (2+4+3)/3 = 3, seg2 = 1
], np.float32)
NUM_CALLS = np.array([1, 0, 1, 2])


def test_segment_entropy_golden():
    mean, count = segment_entropy(ENT, SEG, K + 1)
    np.testing.assert_allclose(mean, [[2, 0.5, 0], [1, 0, 0], [2, 0, 0], [1, 3, 1]], rtol=1e-6)
    np.testing.assert_array_equal(count, [[4, 2, 0], [6, 0, 0], [4, 0, 0], [2, 3, 1]])


def test_call_deltas_golden_and_edge_cases():
    d = {k: np.asarray(v) for k, v in call_entropy_deltas(ENT, SEG, NUM_CALLS, K).items()}
    # ΔH_k = H(seg k+1) - H(seg k). The reversed sign (a likely bug) gives +1.5 and (-2, +2).
    np.testing.assert_allclose(d["delta_BK"], [[-1.5, 0], [0, 0], [0, 0], [2, -2]], rtol=1e-6)
    np.testing.assert_array_equal(d["exists_BK"], [[1, 0], [0, 0], [1, 0], [1, 1]])
    # Row 1 (no calls): nothing valid. Row 2 (call at budget end): exists but not valid.
    np.testing.assert_array_equal(d["valid_BK"], [[1, 0], [0, 0], [0, 0], [1, 1]])
    np.testing.assert_array_equal(d["reduces_BK"], [[1, 0], [0, 0], [0, 0], [0, 1]])


def test_deltas_jit_and_numpy_reference():
    rng = np.random.default_rng(0)
    B, T, Kc = 6, 40, 3
    seg = np.full((B, T), -1)
    n = rng.integers(0, Kc + 1, size=B)
    for b in range(B):
        pos = np.sort(rng.choice(np.arange(2, T), size=T // 2, replace=False))
        seg[b, pos] = np.sort(rng.integers(0, n[b] + 1, size=pos.size))
    ent = rng.uniform(0, 3, size=(B, T)).astype(np.float32)
    got = jax.jit(call_entropy_deltas, static_argnums=3)(ent, seg, n, Kc)
    for b in range(B):
        means = [ent[b][seg[b] == s].mean() if (seg[b] == s).any() else None
                 for s in range(Kc + 1)]
        for k in range(Kc):
            ok = k < n[b] and means[k] is not None and means[k + 1] is not None
            assert bool(got["valid_BK"][b, k]) == ok
            want = means[k + 1] - means[k] if ok else 0.0
            np.testing.assert_allclose(got["delta_BK"][b, k], want, rtol=1e-5, atol=1e-6)


def test_entropy_is_stop_gradiented():
    g = jax.grad(lambda e: jnp.sum(call_entropy_deltas(e, SEG, NUM_CALLS, K)["delta_BK"]))(
        jnp.asarray(ENT))
    assert np.all(np.asarray(g) == 0)


def test_call_mask_from_spans():
    spans = np.array([[[4, 6], [-1, -1]], [[-1, -1], [-1, -1]]])
    mask = call_mask_from_spans(spans, 8)
    np.testing.assert_array_equal(mask, [[0, 0, 0, 0, 1, 1, 0, 0], [0] * 8])


def test_diagnostics_by_token_kind():
    call = np.zeros_like(SEG, bool)
    call[0, 4:6] = True  # row 0's call tokens: entropies 3, 2
    post = (SEG >= 1).astype(np.int8)
    metrics, hists = tool_entropy_diagnostics(ENT, SEG, post, NUM_CALLS, K, call_mask_BT=call)
    mean = {k: float(s) / float(c) for k, (s, c) in metrics.items() if float(c) > 0}
    # tool_call: (3+2)/2; post_tool: row0 seg1 (.5,.5) + row3 seg1,2 (2,4,3,1) -> 11/6.
    np.testing.assert_allclose(mean["entropy/tool_call"], 2.5, rtol=1e-6)
    np.testing.assert_allclose(mean["entropy/post_tool"], 11 / 6, rtol=1e-6)
    # reasoning: row0 (1,2) row1 (1*6) row2 (2*4) row3 (1,1) -> 19/14
    np.testing.assert_allclose(mean["entropy/reasoning"], 19 / 14, rtol=1e-6)
    np.testing.assert_allclose(mean["tool/delta_entropy"], (-1.5 + 2 - 2) / 3, rtol=1e-6)
    np.testing.assert_allclose(mean["tool/entropy_reducing_frac"], 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(mean["tool/calls_without_delta"], 1 / 4, rtol=1e-6)
    values, valid = hists["tool/delta_entropy"]
    assert values.shape == (4 * K,) and int(np.sum(valid)) == 3
