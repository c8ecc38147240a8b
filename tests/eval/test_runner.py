"""Evaluation summaries (unbiased pass@k, per-bucket aggregation and thinking rate, hand-computed)
and the think modes on the eval path (forced prefixes appended and scored as their mode)."""

import dataclasses
import math
import types

import numpy as np
import pytest

from toolrl_jax.data.modes import forced_prefix
from toolrl_jax.data.tokenizer import load_tokenizer, train_demo_tokenizer
from toolrl_jax.eval.runner import (
    ThinkSetting,
    by_think_mode,
    evaluate,
    pass_at_k,
    results_by_mode,
    summarize,
)
from toolrl_jax.types import StopReason, Trajectory


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(4, 3, 2) == 1.0  # fewer than k wrong samples: some draw always passes


def _row(id_, diff, correct, calls, tokens, reducing=0, valid=0):
    return {"id": id_, "task": "arithmetic", "difficulty": diff, "correct": correct,
            "calls": calls, "ok_calls": calls, "tokens": tokens, "short": float(calls == 0),
            "reducing": reducing, "valid_deltas": valid, "delta_sum": -0.5 * reducing}


def test_summary_per_bucket():
    rows = [_row("a", "easy", 1.0, 0, 4), _row("b", "easy", 0.0, 1, 20, 1, 1),
            _row("c", "hard", 1.0, 2, 30, 1, 2), _row("d", "hard", 1.0, 1, 26, 0, 1)]
    out = summarize(rows)
    assert out["all"]["accuracy"] == 0.75 and out["all"]["tool_calls"] == 1.0
    assert out["easy"]["accuracy"] == 0.5 and out["easy"]["tokens"] == 12.0
    assert out["hard"]["tool_calls"] == 1.5
    assert out["all"]["entropy_reducing_share"] == pytest.approx(2 / 4)
    assert out["all"]["acc_per_100_tokens"] == pytest.approx(0.75 / 20 * 100)
    assert out["easy"]["short_mode_frac"] == 0.5
    assert math.isnan(summarize([_row("e", "easy", 0.0, 0, 3)])["all"]["entropy_reducing_share"])


def test_pass_at_k_in_summary():
    rows = [_row("a", "easy", c, 0, 5) for c in (1.0, 0.0, 0.0)]
    out = summarize(rows, samples=3)
    assert out["all"]["items"] == 1
    assert out["all"]["pass@3"] == 1.0 and out["all"]["avg@3"] == pytest.approx(1 / 3)


def test_think_rate_per_bucket_by_hand():
    rows = [_row("a", "easy", 1.0, 0, 4), _row("b", "easy", 0.0, 1, 20),
            _row("c", "hard", 1.0, 2, 30), _row("d", "hard", 0.0, 0, 8),
            _row("e", "hard", 1.0, 1, 26)]
    # short = no call here: easy 1 of 2 short, hard 1 of 3 short, all 2 of 5 short.
    too_long = {**_row("f", "hard", 0.0, 0, 0), "short": 0.0, "too_long": 1}
    out = summarize(rows + [too_long])
    assert out["easy"]["think_rate"] == pytest.approx(1 - 1 / 2)
    # The prompt that was too long to run has no mode: it counts in accuracy, not in the rate.
    assert out["hard"]["think_rate"] == pytest.approx(1 - 1 / 3)
    assert out["hard"]["accuracy"] == pytest.approx(2 / 4)
    assert out["all"]["think_rate"] == pytest.approx(1 - 2 / 5)
    assert out["all"]["short_mode_frac"] == pytest.approx(2 / 5)
    # Accuracy per mode, by hand: short a (1), d (0); long b (0), c (1), e (1); f never ran.
    assert out["all"]["accuracy_short"] == pytest.approx(1 / 2)
    assert out["all"]["accuracy_long"] == pytest.approx(2 / 3)
    assert out["easy"]["accuracy_short"] == 1.0 and out["easy"]["accuracy_long"] == 0.0
    assert math.isnan(summarize([_row("g", "easy", 1.0, 0, 3)])["all"]["accuracy_long"])
    assert [out[b]["group"] for b in ("all", "easy", "hard", "arithmetic")] == [
        "all", "difficulty", "difficulty", "task"]


def test_bucket_names_of_different_kinds_do_not_collide():
    """The synthetic function-calling items have a category "easy" beside the difficulty."""
    rows = [{**_row("a", "easy", 1.0, 0, 4), "category": "easy"},
            {**_row("b", "easy", 0.0, 0, 4), "category": "irrelevance"}]
    out = summarize(rows)
    assert out["easy"]["items"] == 2 and out["easy"]["group"] == "difficulty"
    assert out["category:easy"]["items"] == 1 and out["category:easy"]["group"] == "category"
    assert out["irrelevance"]["accuracy"] == 0.0


# --- think modes on the eval path: the forced prefix is prompt, and its mode is the row's -------


class _Engine:
    """Records the prompts it is given and answers every one with ``text`` (no calls)."""

    def __init__(self, text, prefill_len=64):
        self.text, self.prompts = text, []
        self.shapes = types.SimpleNamespace(prefill_len=prefill_len)

    def generate(self, params, prompts, samples, prompt_ids=None, answer_calls=None):
        self.prompts += [np.asarray(p).tolist() for p in prompts]
        return [_trajectory(self.text, len(p)) for p in prompts for _ in range(samples)]


def _trajectory(text, n_prompt, n_sampled=5):
    n = n_prompt + n_sampled
    loss = np.array([0] * n_prompt + [1] * n_sampled, np.int8)
    return Trajectory(prompt_id=0, sample_id=0, tokens=np.arange(1, n + 1, dtype=np.int32),
                      loss_mask=loss, old_logp=np.zeros(n, np.float32),
                      entropy=np.where(loss > 0, 1.0, 0.0).astype(np.float32),
                      segment_ids=np.where(loss > 0, 0, -1).astype(np.int32),
                      post_tool_mask=np.zeros(n, np.int8), prompt_len=n_prompt, calls=[],
                      stop_reason=StopReason.ANSWER, text=text)


@pytest.fixture(scope="module")
def demo_tokenizer(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    return load_tokenizer(train_demo_tokenizer(out, ["What is 2+2? <answer>4</answer>"] * 5, 300))


def _records(n, prompt_len=6):
    return [{"id": f"r{i}", "task": "arithmetic", "difficulty": "easy", "question": "2+2?",
             "answer": "4", "trajectory": "", "metadata": {},
             "prompt_ids": np.arange(1, prompt_len + 1, dtype=np.int32)} for i in range(n)]


@dataclasses.dataclass
class _Syntax:
    answer_style: str = "tag"


def _evaluate(engine, records, think):
    return evaluate(engine, None, [records], _Syntax(), samples=1, seq_len=32, max_calls=1,
                    think=think)


def test_forced_prefix_is_appended_to_the_prompt_and_scores_the_forced_mode(demo_tokenizer):
    # The completion of a forced-think prompt continues inside the block: it has no "<think>",
    # so detection alone would call it short (no tag, no executed call).
    text = "2 and 2 make 4.</think><answer>4</answer>"
    think_id, close_id = demo_tokenizer.convert_tokens_to_ids(["<think>", "</think>"])
    expected = {"auto": ([], 0.0), "think": ([think_id], 1.0), "no_think": ([think_id, close_id],
                                                                             0.0)}
    for mode, (suffix, rate) in expected.items():
        setting = ThinkSetting.of(mode, demo_tokenizer)
        assert demo_tokenizer.decode(setting.prefix_ids) == forced_prefix(mode)
        engine = _Engine(text)
        out = _evaluate(engine, _records(3), setting)
        assert engine.prompts == [list(range(1, 7)) + suffix] * 3
        assert out["all"]["think_rate"] == rate, mode
        assert out["all"]["accuracy"] == 1.0  # the answer is graded the same in every mode
    with pytest.raises(ValueError, match="think mode 'deep'"):
        ThinkSetting.of("deep", demo_tokenizer)


def test_prefix_counts_against_the_prompt_length_limit(demo_tokenizer):
    """A prompt that fits only without the prefix is too long in a forced mode."""
    records = _records(2, prompt_len=8)
    auto = _evaluate(_Engine("<answer>4</answer>", prefill_len=8), records,
                     ThinkSetting.of("auto", demo_tokenizer))
    forced = _evaluate(_Engine("<answer>4</answer>", prefill_len=8), records,
                       ThinkSetting.of("no_think", demo_tokenizer))
    assert auto["all"]["prompts_too_long"] == 0 and auto["all"]["accuracy"] == 1.0
    assert forced["all"]["prompts_too_long"] == 2 and forced["all"]["accuracy"] == 0.0
    assert math.isnan(forced["all"]["think_rate"])  # nothing ran, so no mode was seen


def test_results_of_several_modes_keep_the_first_at_the_top():
    per_mode = {m: summarize([_row("a", "easy", float(i), 0, 4)])
                for i, m in enumerate(("no_think", "think"))}
    out = by_think_mode(per_mode)
    assert out["all"]["accuracy"] == 0.0  # no_think, the first evaluated
    assert results_by_mode(out) == per_mode
    single = {**by_think_mode({"think": per_mode["think"]}), "_meta": {"think_modes": ["think"]}}
    assert "think_modes" not in single and list(results_by_mode(single)) == ["think"]
    assert list(results_by_mode(per_mode["think"])) == ["auto"]  # files from before modes
