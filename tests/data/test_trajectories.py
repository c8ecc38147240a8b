import pytest

from toolrl_jax.data.trajectories import (
    DEFAULT_RESULT_TEMPLATE,
    Segment,
    choose_mode,
    detect_mode,
    format_tool_result,
    join_segments,
    split_segments,
    template_renderer,
    tool_renderer,
)

LONG = ("<think>Use the calculator for 437*86.</think>\n<calculator>437*86</calculator>"
        "\n<result>\n37582\n</result>\n<answer>37582</answer>")


def test_split_segments_golden():
    assert split_segments(LONG) == (
        Segment("model", "<think>Use the calculator for 437*86.</think>\n"
                         "<calculator>437*86</calculator>"),
        Segment("tool_result", "\n<result>\n37582\n</result>\n"),
        Segment("model", "<answer>37582</answer>"),
    )
    assert join_segments(split_segments(LONG)) == LONG  # the stored form is the canonical one


def test_whitespace_around_results_is_normalised():
    # Compact or spaced-out stored forms render the same way the rollout engine appends results.
    compact = ("<calculator>437*86</calculator><result>37582</result><answer>37582</answer>")
    spaced = ("<calculator>437*86</calculator>  \n<result>\n37582\n</result>\n\n "
              "<answer>37582</answer>")
    expected = split_segments("<calculator>437*86</calculator>\n<result>\n37582\n</result>\n"
                              "<answer>37582</answer>")
    assert split_segments(compact) == expected == split_segments(spaced)


def test_two_calls_and_multiline_output():
    text = ("<search>a</search>\n<result>\n[1] A\nline two\n</result>\n"
            "<python>print('x\\n')</python>\n<result>\nx\n\n</result>\n<answer>x</answer>")
    segs = split_segments(text)
    assert [s.kind for s in segs] == ["model", "tool_result", "model", "tool_result", "model"]
    assert segs[1].text == "\n<result>\n[1] A\nline two\n</result>\n"
    assert segs[3].text == "\n<result>\nx\n\n</result>\n"  # the output's own newline is kept
    assert segs[2].text == "<python>print('x\\n')</python>"


def test_short_completion_is_one_model_segment():
    assert split_segments("<answer>4</answer>") == (Segment("model", "<answer>4</answer>"),)


@pytest.mark.parametrize(
    "text, message",
    [
        ("<calculator>1</calculator> <result>\n1\n", "never closed"),
        ("a </result> b", "without '<result>'"),
        ("<calculator>1</calculator><result>x</result> </result>", "without '<result>'"),
        ("<calculator>1</calculator><result> <result> </result>", "nested"),
        ("I think <result>\n4\n</result>", "does not follow a tool call"),
        ("<calculator>1</calculator><result>1</result><result>1</result>", "char 44 does not"),
        ("<weather>x</weather><result>1</result>", "does not follow a tool call"),
    ],
)
def test_split_segments_errors(text, message):
    with pytest.raises(ValueError, match=message):
        split_segments(text)


def test_template_matches_the_xml_syntax():
    from toolrl_jax.tools.syntax.xml_tags import XmlSyntax

    assert DEFAULT_RESULT_TEMPLATE == XmlSyntax.default_result_template
    assert format_tool_result("{x}") == "\n<result>\n{x}\n</result>\n"  # braces are safe


def test_template_renderer():
    render = template_renderer("<output>{result}</output>")
    segs = split_segments(LONG, render)
    assert segs[1] == Segment("tool_result", "<output>37582</output>")
    with pytest.raises(ValueError, match="must contain"):
        template_renderer("no slot")


def test_tool_renderer_runs_the_real_tools(tmp_path):
    from toolrl_jax.tools.calculator import CalculatorTool
    from toolrl_jax.tools.executor import ToolExecutor
    from toolrl_jax.tools.search import SearchTool
    from toolrl_jax.tools.syntax.xml_tags import XmlSyntax

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "1", "title": "Bavuv", "text": "Bavuv is a city in Vomutia."}\n')
    syntax = XmlSyntax(["calculator", "search"])
    with ToolExecutor({"calculator": CalculatorTool(),
                       "search": SearchTool.from_jsonl(str(corpus))}) as executor:
        render = tool_renderer(syntax, executor)
        segs = split_segments(LONG, render)
        assert segs[1].text == "\n<result>\n37582\n</result>\n"
        text = "<search>Bavuv</search><result>stale</result><answer>Vomutia</answer>"
        assert split_segments(text, render)[1].text == (
            "\n<result>\n[1] Bavuv\nBavuv is a city in Vomutia.\n</result>\n")
        with pytest.raises(ValueError, match="failed while rendering"):
            split_segments("<calculator>1/0</calculator><result>1</result>", render)


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
