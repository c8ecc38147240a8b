"""Scoring and batching: padded arrays by hand, row selection/joining, and the training reward
agreeing with the evaluation verdict on a shared set of completions."""

import dataclasses
import json
import pathlib

import numpy as np
import pytest

from toolrl_jax.config import RLConfig
from toolrl_jax.eval.runner import summarize
from toolrl_jax.rl.recipes import make_recipe
from toolrl_jax.scoring.arrays import concat_rows, sft_batch, trajectory_arrays
from toolrl_jax.scoring.scored import concat_scored, rollout_metrics, score_batch
from toolrl_jax.train.rl_loop import reward_inputs
from toolrl_jax.types import StopReason, ToolCallRecord, ToolStatus, Trajectory
from toolrl_jax.verifiers import grade

AGREEMENT = pathlib.Path(__file__).resolve().parents[1] / "data" / "verifier_agreement.jsonl"


@dataclasses.dataclass
class _Syntax:
    answer_style: str = "tag"


def _traj(text, n_prompt=3, n_sampled=4, calls=(), prompt_id=0, sample_id=0,
          stop=StopReason.ANSWER):
    n = n_prompt + n_sampled
    loss = np.array([0] * n_prompt + [1] * n_sampled, np.int8)
    return Trajectory(
        prompt_id=prompt_id, sample_id=sample_id, tokens=np.arange(1, n + 1, dtype=np.int32),
        loss_mask=loss, old_logp=np.where(loss > 0, -0.5, 0.0).astype(np.float32),
        entropy=np.where(loss > 0, 1.0, 0.0).astype(np.float32),
        segment_ids=np.where(loss > 0, 0, -1).astype(np.int32),
        post_tool_mask=np.zeros(n, np.int8), prompt_len=n_prompt, calls=list(calls),
        stop_reason=stop, text=text)


def test_trajectory_arrays_pad_by_hand():
    call = ToolCallRecord("calculator", "1+1", ToolStatus.ERROR, "boom", (3, 5), (5, 6))
    a = trajectory_arrays([_traj("a", calls=[call]), _traj("b", n_sampled=2)], seq_len=8,
                          max_calls=2)
    assert a.tokens_BT.tolist() == [[1, 2, 3, 4, 5, 6, 7, 0], [1, 2, 3, 4, 5, 0, 0, 0]]
    assert a.attn_mask_BT.sum(1).tolist() == [7, 5]
    assert a.loss_mask_BT.tolist()[1] == [0, 0, 0, 1, 1, 0, 0, 0]
    assert a.old_logp_BT[1, 3] == -0.5 and a.old_logp_BT[1, 5] == 0.0
    assert a.segment_ids_BT[0].tolist() == [-1, -1, -1, 0, 0, 0, 0, -1]
    assert a.call_status_BK.tolist() == [[int(ToolStatus.ERROR), -1], [-1, -1]]
    assert a.call_spans_BK2[0].tolist() == [[3, 5], [-1, -1]]
    assert a.num_calls_B.tolist() == [1, 0] and a.length_B.tolist() == [4, 2]
    with pytest.raises(ValueError, match="trajectory of 7 tokens exceeds the train length 6"):
        trajectory_arrays([_traj("a")], seq_len=6, max_calls=1)


def test_sft_batch_and_row_ops():
    b = sft_batch([{"tokens": [5, 6, 7], "loss_mask": [0, 1, 1]}, {"tokens": [9], "loss_mask": [1]}],
                  seq_len=4)
    assert b.tokens_BT.tolist() == [[5, 6, 7, 0], [9, 0, 0, 0]]
    assert b.loss_mask_BT.tolist() == [[0, 1, 1, 0], [1, 0, 0, 0]]
    joined = concat_rows([b, b])
    assert joined.tokens_BT.shape == (4, 4) and joined.attn_mask_BT[:, 0].tolist() == [1] * 4
    with pytest.raises(ValueError, match="SFT example of 3 tokens exceeds the train length 2"):
        sft_batch([{"tokens": [1, 2, 3], "loss_mask": [1, 1, 1]}], seq_len=2)


def test_scored_take_and_concat_keep_host_objects_aligned():
    records = [{"id": str(i), "task": "arithmetic", "answer": str(i), "difficulty": d}
               for i, d in enumerate(["easy", "hard", "hard"])]
    trajs = [_traj(f"<answer>{i if i != 1 else 9}</answer>", prompt_id=i) for i in range(3)]
    s = score_batch(_Syntax(), trajs, records, seq_len=8, max_calls=1)
    assert s.correct_B.tolist() == [1.0, 0.0, 1.0] and s.has_answer_B.all()
    picked = concat_scored([s, s]).take(np.array([5, 1]))
    assert [t.prompt_id for t in picked.trajectories] == [2, 1]
    assert [r["id"] for r in picked.records] == ["2", "1"]
    assert picked.correct_B.tolist() == [1.0, 0.0] and picked.arrays.tokens_BT.shape == (2, 8)
    m = rollout_metrics(s)
    assert m["rollout/accuracy"] == pytest.approx(2 / 3)
    assert m["rollout/accuracy_hard"] == 0.5 and m["rollout/accuracy_easy"] == 1.0


def test_no_answer_is_a_void_turn_only_when_the_model_stopped_itself():
    trajs = [_traj("no tags", stop=StopReason.EOS), _traj("no tags", stop=StopReason.BUDGET)]
    recs = [{"id": "a", "task": "arithmetic", "answer": "1"}] * 2
    s = score_batch(_Syntax(), trajs, recs, seq_len=8, max_calls=1)
    assert s.has_answer_B.tolist() == [False, False] and s.void_turn_B.tolist() == [True, False]


def _agreement_rows():
    return [json.loads(line) for line in AGREEMENT.read_text().splitlines() if line.strip()]


def test_training_reward_and_evaluation_verdict_agree_on_the_shared_set():
    """Every completion of the shared set, graded the way training grades (score_batch →
    RewardInputs → the outcome reward, and `correct` for AutoTool / TAO-RL) and the way evaluation
    reports it (score_batch rows → summarize), against the verifier's own verdict."""
    rows = _agreement_rows()
    assert len(rows) >= 40
    outcome = make_recipe(RLConfig(recipe="grpo"), group_size=2, max_new_tokens=8)
    for style in sorted({r["style"] for r in rows}):
        group = [r for r in rows if r["style"] == style]
        if len(group) % 2:
            group = group + group[:1]  # the outcome recipe wants whole groups of 2
        records = [{"id": r["id"], "task": r["task"], "answer": r["answer"]} for r in group]
        trajs = [_traj(r["completion"]) for r in group]
        scored = score_batch(_Syntax(style), trajs, records, seq_len=8, max_calls=1)
        inputs = reward_inputs(scored)
        reward = outcome.compute_rewards(inputs).reward_B
        evaluated = summarize([{"id": r["id"], "task": r["task"], "difficulty": "",
                                "correct": float(scored.correct_B[i]),
                                "score": float(scored.score_B[i]), "calls": 0, "ok_calls": 0,
                                "tokens": 4, "short": 1.0, "reducing": 0, "valid_deltas": 0,
                                "delta_sum": 0.0} for i, r in enumerate(group)])
        for i, r in enumerate(group):
            verdict = grade(r["completion"], records[i], style)
            assert (verdict.correct, verdict.score) == (r["expected_correct"],
                                                        pytest.approx(r["expected_score"])), r["id"]
            assert reward[i] == pytest.approx(verdict.score), r["id"]  # training reward
            assert bool(inputs.correct_B[i]) == verdict.correct, r["id"]  # training correctness
        want_acc = np.mean([grade(r["completion"], rec, style).correct
                            for r, rec in zip(group, records)])
        assert evaluated["all"]["accuracy"] == pytest.approx(want_acc)  # evaluation accuracy


def test_batches_pad_to_a_bucket_of_their_longest_row():
    from toolrl_jax.scoring.arrays import bucketed_length

    assert [bucketed_length(n, 16, 64) for n in (1, 16, 17, 50, 64)] == [16, 16, 32, 64, 64]
    with pytest.raises(ValueError, match="row of 65 tokens exceeds the train length 64"):
        bucketed_length(65, 16, 64)
    a = trajectory_arrays([_traj("a"), _traj("b", n_sampled=2)], seq_len=32, max_calls=1)
    cut = a.truncate(bucketed_length(a.longest, 4, 32))
    assert a.longest == 7 and cut.tokens_BT.shape == (2, 8) and cut.call_status_BK.shape == (2, 1)
    np.testing.assert_array_equal(cut.tokens_BT, a.tokens_BT[:, :8])
    with pytest.raises(ValueError, match="would cut rows of 7 tokens"):
        a.truncate(6)
    b = sft_batch([{"tokens": [5, 6, 7], "loss_mask": [0, 1, 1]}], seq_len=64, bucket=16)
    assert b.tokens_BT.shape == (1, 16)
    with pytest.raises(ValueError, match="SFT example of 70 tokens exceeds the train length 64"):
        sft_batch([{"tokens": [1] * 70, "loss_mask": [1] * 70}], seq_len=64, bucket=16)
