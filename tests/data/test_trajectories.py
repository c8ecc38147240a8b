import pytest

from toolrl_jax.data.trajectories import (
    Segment,
    choose_mode,
    detect_mode,
    format_tool_result,
    join_segments,
    split_segments,
)

LONG = ("<think>Use the calculator for 437*86.</think>\n<calculator>437*86</calculator>"
        "<result>\n37582\n</result>\n<answer>37582</answer>")


def test_split_segments_golden():
    assert split_segments(LONG) == (
        Segment("model", "<think>Use the calculator for 437*86.</think>\n"
                         "<calculator>437*86</calculator>"),
        Segment("tool_result", "<result>\n37582\n</result>"),
        Segment("model", "\n<answer>37582</answer>"),
    )
    assert join_segments(split_segments(LONG)) == LONG


def test_split_segments_short_and_adjacent_results():
    assert split_segments("<answer>4</answer>") == (Segment("model", "<answer>4</answer>"),)
    text = "<result>\na\n</result><result>\nb\n</result>"
    kinds = [s.kind for s in split_segments(text)]
    assert kinds == ["tool_result", "tool_result"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("a <result>\n1\n", "never closed"),
        ("a </result> b", "without '<result>'"),
        ("<result>x</result> </result>", "without '<result>'"),
        ("<result> <result> </result>", "nested"),
    ],
)
def test_split_segments_errors(text, message):
    with pytest.raises(ValueError, match=message):
        split_segments(text)


def test_format_tool_result():
    assert format_tool_result("7") == "<result>\n7\n</result>"


def test_detect_mode():
    assert detect_mode("<answer>4</answer>") == "short"
    assert detect_mode(LONG) == "long"
    assert detect_mode("<search>x</search>") == "long"


def test_choose_mode_policies():
    kw = dict(item_id="x", p_long=0.5, seed=0)
    assert choose_mode("always_long", difficulty="easy", **kw) == "long"
    assert choose_mode("always_short", difficulty="hard", **kw) == "short"
    assert choose_mode("by_difficulty", difficulty="easy", **kw) == "short"
    assert choose_mode("by_difficulty", difficulty="hard", **kw) == "long"
    assert choose_mode("by_difficulty", difficulty="", **kw) == "long"
    with pytest.raises(ValueError, match="unknown SFT labelling policy"):
        choose_mode("sometimes", difficulty="", **kw)


def test_random_policy_is_keyed_and_ignores_difficulty():
    ids = [f"item-{i}" for i in range(2000)]
    modes = [choose_mode("random", item_id=i, difficulty="easy", p_long=0.3, seed=0) for i in ids]
    again = [choose_mode("random", item_id=i, difficulty="hard", p_long=0.3, seed=0) for i in ids]
    assert modes == again  # deterministic, and difficulty plays no part
    frac = modes.count("long") / len(modes)
    assert 0.27 < frac < 0.33
    other_seed = [choose_mode("random", item_id=i, difficulty="", p_long=0.3, seed=1) for i in ids]
    assert other_seed != modes
