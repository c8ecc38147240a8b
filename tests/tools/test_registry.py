"""Building tools, syntax and executor from the config; config errors name the key."""

import json
import subprocess
import sys

import pytest

from toolrl_jax.config import ConfigError, from_config_dict
from toolrl_jax.tools import (
    HermesSyntax,
    MarkdownSyntax,
    ParsedCall,
    PythonTool,
    XmlSyntax,
    build_executor,
    build_syntax,
    build_tools,
    function_spec,
)
from toolrl_jax.types import ToolStatus
from toolrl_jax.verifiers import extract_answer


def tools_cfg(**section):
    return from_config_dict({"tools": section}).tools


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": 1, "title": "Paris", "text": "Capital of France."}) + "\n")
    return str(path)


def test_build_everything_and_run_a_turn(corpus):
    cfg = tools_cfg(enabled=("python", "calculator", "search"),
                    search={"corpus_path": corpus, "top_k": 1})
    tools = build_tools(cfg)
    assert set(tools) == {"python", "calculator", "search"}
    assert isinstance(tools["python"], PythonTool) and tools["python"].backend
    syntax = build_syntax(cfg)
    assert isinstance(syntax, XmlSyntax)
    turn = "I will search.\n<search>capital of France</search>"
    end = syntax.find_call_end(turn)
    call = syntax.parse_last_call(turn[:end])
    with build_executor(cfg, tools) as ex:
        (result,) = ex.run([call])
    assert result.status == ToolStatus.OK
    assert syntax.format_result(result) == "\n<result>\n[1] Paris\nCapital of France.\n</result>\n"
    assert function_spec(tools["calculator"])["function"]["parameters"]["required"] == [
        "expression"
    ]


def test_syntax_choice_and_options():
    assert isinstance(build_syntax(tools_cfg(syntax="hermes")), HermesSyntax)
    md = build_syntax(tools_cfg(syntax="markdown", markdown_result_marker="stdout",
                                answer_style="boxed"))
    assert isinstance(md, MarkdownSyntax) and md.result_marker == "stdout"
    assert md.answer_style == "boxed" and extract_answer("so \\boxed{3}", md.answer_style) == "3"
    custom = build_syntax(tools_cfg(result_template="<r>{result}</r>"))
    assert custom.default_result_template != custom.result_template == "<r>{result}</r>"


def test_replay_executor_builds_no_tools(tmp_path):
    path = str(tmp_path / "rec.jsonl")
    rec = tools_cfg(enabled=("calculator",), cache={"mode": "record", "path": path})
    with build_executor(rec) as ex:
        assert ex.run_one(ParsedCall("calculator", {"expression": "7*6"}, "", 0, 0)).text == "42"
    play = tools_cfg(enabled=("calculator",), cache={"mode": "replay", "path": path})
    with build_executor(play) as ex:
        assert ex.tools == {}
        assert ex.run_one(ParsedCall("calculator", {"expression": "7*6"}, "", 0, 0)).text == "42"


@pytest.mark.parametrize(
    "section, message",
    [
        ({"enabled": ("python", "shell")}, "config.tools.enabled: unknown tool 'shell'"),
        ({"enabled": ("python", "python")}, "lists a tool twice"),
        ({"enabled": ("search",)}, "config.tools.search.corpus_path must be set"),
        ({"syntax": "json"}, "config.tools.syntax='json' is not allowed"),
        ({"python": {"timeout_s": 0}}, "config.tools.python.timeout_s=0.0 must be > 0"),
        ({"python": {"sandbox": "docker"}}, "config.tools.python.sandbox='docker'"),
        ({"python": {"sandbox_uid": 0}}, "sandbox_uid=0 must be > 0"),
        ({"python": {"timeot_s": 3}}, "did you mean 'timeout_s'"),
        ({"cache": {"mode": "replay"}}, "config.tools.cache.path must be set"),
        ({"result_template": "<r></r>"}, "must contain '{result}'"),
        ({"markdown_result_marker": "a`b"}, "markdown_result_marker"),
        ({"calculator": {"max_result_digits": 5000}}, "must be in [1, 4300]"),
        ({"search": {"b": 2.0}}, "config.tools.search.b=2.0 must be in [0, 1]"),
    ],
)
def test_config_errors_name_the_key(section, message):
    with pytest.raises(ConfigError) as e:
        tools_cfg(**section)
    assert message in str(e.value)


def test_tools_package_never_imports_jax():
    code = ("import sys, toolrl_jax.tools, toolrl_jax.tools.registry; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'flax')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
