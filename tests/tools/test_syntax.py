"""Call syntaxes: well-formed and malformed calls, call ends, result wrapping, answers."""

import random

import pytest

from toolrl_jax.tools import (
    HermesSyntax,
    InvalidCall,
    MarkdownSyntax,
    ParsedCall,
    ToolResult,
    XmlSyntax,
)
from toolrl_jax.types import ToolStatus
from toolrl_jax.verifiers import extract_answer

TOOLS = ("python", "calculator", "search")
FENCE = "```"


def xml():
    return XmlSyntax(TOOLS)


def md():
    return MarkdownSyntax(TOOLS)


def hermes():
    return HermesSyntax(TOOLS)


# ---------------------------------------------------------------- XML tags


def test_xml_well_formed_calls():
    s = xml()
    text = "Let me compute.\n<python>\nx = 3\nprint(x * 2)\n</python>"
    call = s.parse_last_call(text)
    assert isinstance(call, ParsedCall)
    assert call.name == "python" and call.arguments == {"code": "x = 3\nprint(x * 2)"}
    assert text[call.start : call.end] == call.raw and call.end == len(text)
    assert s.parse_last_call("<search> capital of France </search>").arguments == {
        "query": "capital of France"
    }
    assert s.parse_last_call("<calculator>2+2</calculator>").arguments == {"expression": "2+2"}


def test_xml_last_call_wins_and_find_call_end_finds_first():
    s = xml()
    text = "<calculator>1+1</calculator> then <search>q</search>"
    assert s.parse_last_call(text).name == "search"
    assert s.find_call_end(text) == len("<calculator>1+1</calculator>")
    assert s.find_call_end(text, start=30) == len(text)
    # A BPE token may overshoot the end string: the call end is still found exactly.
    assert s.find_call_end("<python>print(1)</python>\n\n") == len("<python>print(1)</python>")


def test_xml_code_cleanup_strips_fence_and_indent():
    call = xml().parse_last_call("<python>\n```python\n    a = 1\n    print(a)\n```\n</python>")
    assert call.arguments["code"] == "a = 1\nprint(a)"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("<python>\n   \n</python>", "empty python call"),
        ("<python>print(1)", "unclosed <python>"),  # cut off at the token budget
        ("<python>a</python> more <search>half a que", "unclosed <search>"),
        ("print(1)</python>", "without an opening <python>"),
    ],
)
def test_xml_malformed_become_invalid_calls(text, needle):
    call = xml().parse_last_call(text)
    assert isinstance(call, InvalidCall) and needle in call.message
    assert call.to_result().status == ToolStatus.INVALID_CALL


def test_xml_known_but_disabled_tool_is_unknown():
    s = XmlSyntax(["python"])
    assert "</search>" in s.call_end_strings  # still stops, so the model hears about it
    call = s.parse_last_call("<search>x</search>")
    assert isinstance(call, InvalidCall)
    assert call.message == "unknown tool 'search'; available tools: python"


def test_xml_no_call_is_none():
    assert xml().parse_last_call("just thinking about <b>bold</b> text") is None
    assert xml().find_call_end("no calls here") is None


# ---------------------------------------------------------------- Markdown fences


def test_markdown_well_formed_call():
    s = md()
    text = f"I'll run:\n{FENCE}python\nprint(6 * 7)\n{FENCE}"
    call = s.parse_last_call(text)
    assert isinstance(call, ParsedCall) and call.arguments == {"code": "print(6 * 7)"}
    assert s.find_call_end(text) == len(text)
    assert s.parse_last_call(f"{FENCE}py\n1+1\n{FENCE}").name == "python"  # alias
    assert s.parse_last_call(f"{FENCE}search\nEiffel tower\n{FENCE}").arguments == {
        "query": "Eiffel tower"
    }


def test_markdown_non_tool_blocks_are_not_calls():
    s = md()
    assert s.parse_last_call(f"{FENCE}text\nhello\n{FENCE}") is None
    assert s.parse_last_call(f"{FENCE}output\n42\n{FENCE}") is None  # a result block
    # An opening fence also ends with the end string: find_call_end must not fire on it.
    assert s.find_call_end(f"Here:\n{FENCE}") is None
    assert s.find_call_end(f"{FENCE}bash\nls\n{FENCE}") is None


def test_markdown_fence_inside_code_is_content():
    s = md()
    text = f'{FENCE}python\ns = """\n{FENCE}python\n"""\nprint(len(s))\n{FENCE}\nafter'
    end = s.find_call_end(text)
    call = s.parse_last_call(text[:end])
    assert call.arguments["code"] == f's = """\n{FENCE}python\n"""\nprint(len(s))'


@pytest.mark.parametrize(
    "text, needle",
    [
        (f"{FENCE}python\nprint(1", "unclosed ```python"),
        (f"{FENCE}python\n\n{FENCE}", "empty python call"),
    ],
)
def test_markdown_malformed(text, needle):
    call = md().parse_last_call(text)
    assert isinstance(call, InvalidCall) and needle in call.message


def test_markdown_result_marker_is_configurable():
    s = MarkdownSyntax(TOOLS, result_marker="stdout")
    assert s.format_result(ToolResult(ToolStatus.OK, "42")) == f"\n{FENCE}stdout\n42\n{FENCE}\n"


# ---------------------------------------------------------------- Hermes / Qwen JSON


def test_hermes_well_formed_call():
    s = hermes()
    text = ('<tool_call>\n{"name": "python", "arguments": {"code": "print(1)\nprint(2)"}}\n'
            "</tool_call>")
    call = s.parse_last_call(text)  # raw newline inside a JSON string: accepted (strict=False)
    assert isinstance(call, ParsedCall) and call.arguments == {"code": "print(1)\nprint(2)"}
    assert s.find_call_end(text + "<|im_end|>") == len(text)
    # arguments given as a JSON string, and Llama-style "parameters"
    assert s.parse_last_call(
        '<tool_call>{"name": "search", "arguments": "{\\"query\\": \\"x\\"}"}</tool_call>'
    ).arguments == {"query": "x"}
    assert s.parse_last_call(
        '<tool_call>{"name": "calculator", "parameters": {"expression": "1+2"}}</tool_call>'
    ).arguments == {"expression": "1+2"}


@pytest.mark.parametrize(
    "body, needle",
    [
        ('{"name": "python", "arguments": {"code": "x"', "invalid JSON"),
        ("not json at all", "invalid JSON"),
        ('["python"]', "must hold a JSON object"),
        ('{"arguments": {}}', 'needs a string "name"'),
        ('{"name": "shell", "arguments": {}}', "unknown tool 'shell'"),
        ('{"name": "python", "arguments": [1, 2]}', '"arguments" must be a JSON object'),
        ('{"name": "python", "arguments": "{oops"}', "not valid JSON"),
        ("   ", "empty <tool_call>"),
    ],
)
def test_hermes_malformed(body, needle):
    call = hermes().parse_last_call(f"<tool_call>{body}</tool_call>")
    assert isinstance(call, InvalidCall) and needle in call.message, call


def test_hermes_unclosed_at_budget():
    call = hermes().parse_last_call('<tool_call>{"name": "python", "argu')
    assert isinstance(call, InvalidCall) and "unclosed <tool_call>" in call.message


# ---------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("make", [xml, md, hermes])
def test_parsers_never_raise_on_random_text(make):
    """Model output is arbitrary: random mixes of syntax fragments must never raise."""
    s = make()
    pieces = ["<python>", "</python>", "<search>", "</search>", "<tool_call>", "</tool_call>",
              FENCE, f"{FENCE}python", "\n", "{", "}", '"name"', ":", '"python"', "print(1)",
              "<answer>", "</answer>", "\\boxed{", "x", " ", '"arguments"', "[", "]", "\x00"]
    rng = random.Random(0)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        call = s.parse_last_call(text)
        assert call is None or isinstance(call, (ParsedCall, InvalidCall))
        end = s.find_call_end(text)
        assert end is None or 0 < end <= len(text)
        extract_answer(text, s.answer_style)


@pytest.mark.parametrize(
    "make, wrapped",
    [
        (xml, "\n<result>\nout\n</result>\n"),
        (md, f"\n{FENCE}output\nout\n{FENCE}\n"),
        (hermes, "\n<tool_response>\nout\n</tool_response>\n"),
    ],
)
def test_format_result_defaults(make, wrapped):
    assert make().format_result(ToolResult(ToolStatus.OK, "out")) == wrapped


def test_result_template_override_and_stop_strings():
    s = HermesSyntax(TOOLS, result_template="<|im_start|>user\n{result}<|im_end|>")
    assert s.format_result(ToolResult(ToolStatus.OK, "r")) == "<|im_start|>user\nr<|im_end|>"
    assert s.stop_strings == ("</tool_call>", "</answer>")
    assert xml().call_end_strings == ("</python>", "</calculator>", "</search>")
    with pytest.raises(ValueError, match="result"):
        XmlSyntax(TOOLS, result_template="no placeholder")


@pytest.mark.parametrize("make", [xml, md, hermes])
def test_answer_style_and_stop_strings(make):
    """The syntax only names the answer style; ``toolrl_jax.verifiers.extract_answer`` reads it."""
    text = "<answer>first</answer> wait, <answer> 42 </answer> and \\boxed{\\frac{1}{2}}"
    tag = make()
    assert tag.answer_style == "tag" and extract_answer(text, tag.answer_style) == "42"
    assert tag.stop_strings[-1] == "</answer>"
    boxed = type(tag)(TOOLS, answer_style="boxed")
    assert extract_answer(text, boxed.answer_style) == "\\frac{1}{2}"
    assert "</answer>" not in boxed.stop_strings  # a boxed answer has no end string to stop at
    both = type(tag)(TOOLS, answer_style="tag_or_boxed")
    assert extract_answer("so \\boxed{7}", both.answer_style) == "7"
    assert extract_answer("<answer>\\boxed{8}</answer>", both.answer_style) == "8"


@pytest.mark.parametrize("make", [xml, md, hermes])
def test_describe_lists_every_tool(make):
    text = make().describe({"python": "runs code", "search": "finds passages"})
    assert "python" in text and "search" in text and "runs code" in text
