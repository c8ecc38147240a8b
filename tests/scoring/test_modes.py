"""AutoTool mode detection over every call syntax × {think, no_think} × {call, no call}, plus the
SimpleTIR syntax and the mode tag of SFT targets."""

from __future__ import annotations

import pytest

from toolrl_jax.data.modes import (
    NO_THINK_TAG,
    detect_mode,
    forced_prefix,
    tag_completion,
)
from toolrl_jax.tools.syntax import HermesSyntax, MarkdownSyntax, SimpleTirSyntax, XmlSyntax
from toolrl_jax.types import ToolCallRecord, ToolStatus

TOOLS = ("python", "calculator")
SYNTAXES = {
    "xml": (XmlSyntax(TOOLS), "<python>print(6*7)</python>", "<answer>42</answer>"),
    "markdown": (MarkdownSyntax(TOOLS), "```python\nprint(6*7)\n```", "<answer>42</answer>"),
    "hermes": (HermesSyntax(TOOLS),
               '<tool_call>{"name": "python", "arguments": {"code": "print(6*7)"}}</tool_call>',
               "<answer>42</answer>"),
    "simpletir": (SimpleTirSyntax(TOOLS, answer_style="boxed"), "```\nprint(6*7)\n```",
                  "\\boxed{42}"),
}


def _completion(syntax_name, think, call):
    syntax, call_text, answer = SYNTAXES[syntax_name]
    # the tag ends its line: a Markdown / SimpleTIR fence opens only at the start of a line
    tag = "<think>multiply first</think>\n" if think else NO_THINK_TAG + "\n"
    result = syntax.result_template.replace("{result}", "42")
    body = (call_text + result + answer) if call else answer
    return syntax, tag + body


def _record(executed: bool):
    end = 10
    return ToolCallRecord("python", "{}", ToolStatus.OK, "42", (0, end),
                          (end, end + 5) if executed else (end, end))


@pytest.mark.parametrize("syntax_name", sorted(SYNTAXES))
@pytest.mark.parametrize("think", [True, False])
@pytest.mark.parametrize("call", [True, False])
def test_mode_tag_decides_for_every_syntax(syntax_name, think, call):
    syntax, text = _completion(syntax_name, think, call)
    assert (syntax.find_call_end(text) is not None) == call  # the call is really there
    want = "long" if think else "short"
    calls = [_record(True)] if call else []
    assert detect_mode(text, syntax) == want
    assert detect_mode(text, syntax, calls) == want  # a no-think answer may still call


@pytest.mark.parametrize("syntax_name", sorted(SYNTAXES))
@pytest.mark.parametrize("call", [True, False])
def test_untagged_completion_is_long_when_it_calls_in_any_syntax(syntax_name, call):
    syntax, text = _completion(syntax_name, think=False, call=call)
    text = text[len(NO_THINK_TAG) + 1:]  # legacy: no mode tag
    want = "long" if call else "short"
    assert detect_mode(text, syntax) == want  # found by the run's own syntax
    assert detect_mode(text, None, [_record(True)] if call else []) == want  # by the records
    assert detect_mode("<think>hm</think>" + text, syntax) == "long"


def test_answer_calls_are_not_tool_use():
    # a function-calling item's answer call: recorded with an empty result span, never run
    assert detect_mode("untagged call text", None, [_record(False)]) == "short"


def test_tagging_and_forcing():
    assert tag_completion("<answer>4</answer>", "short") == NO_THINK_TAG + "<answer>4</answer>"
    long_text = "<think>use python</think>\n<python>print(4)</python>"
    assert tag_completion(long_text, "long") == long_text
    with pytest.raises(ValueError):
        tag_completion("<answer>4</answer>", "long")
    with pytest.raises(ValueError):
        tag_completion(NO_THINK_TAG + "<python>x</python>", "long")
    assert forced_prefix("auto") == "" and forced_prefix("no_think") == NO_THINK_TAG
    # forced-think prompt prefix + the model's continuation reads as think
    assert detect_mode(forced_prefix("think") + "go</think><answer>1</answer>") == "long"


def test_simpletir_syntax():
    s = SimpleTirSyntax(TOOLS, answer_style="boxed")
    text = "Let me compute.\n```py\nprint(2+2)\n```"
    call = s.parse_last_call(text)
    assert call.name == "python" and call.arguments == {"code": "print(2+2)"}
    assert s.find_call_end(text) == len(text)
    from toolrl_jax.tools.base import ToolResult
    assert s.format_result(ToolResult(ToolStatus.OK, "4")) == "\nCode execution result: 4\n"
    assert s.stop_strings == ("```",)  # boxed answers: no answer tag stops generation
    with pytest.raises(ValueError, match="boxed"):
        SimpleTirSyntax(TOOLS, answer_style="tag")
    with pytest.raises(ValueError, match="python"):
        SimpleTirSyntax(("calculator",), answer_style="boxed")


def test_simpletir_is_selectable_from_config():
    from toolrl_jax.config.tools import ToolsConfig
    from toolrl_jax.tools.registry import build_syntax
    s = build_syntax(ToolsConfig(syntax="simpletir", answer_style="boxed"))
    assert isinstance(s, SimpleTirSyntax)
