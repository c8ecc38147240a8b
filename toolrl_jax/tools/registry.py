"""Builds tools, the call syntax and the executor from :class:`ToolsConfig` (the config boundary:
nothing below this reads config names)."""

from __future__ import annotations

from collections.abc import Mapping

from toolrl_jax.config.tools import ToolsConfig
from toolrl_jax.tools.base import Tool
from toolrl_jax.tools.cache import ToolCache
from toolrl_jax.tools.calculator import CalculatorTool
from toolrl_jax.tools.executor import ToolExecutor
from toolrl_jax.tools.python_tool import PythonTool
from toolrl_jax.tools.search import SearchTool
from toolrl_jax.tools.syntax import (
    CallSyntax,
    HermesSyntax,
    MarkdownSyntax,
    SimpleTirSyntax,
    XmlSyntax,
)


def build_tool(name: str, cfg: ToolsConfig) -> Tool:
    if name == "python":
        return PythonTool(cfg.python)
    if name == "calculator":
        c = cfg.calculator
        return CalculatorTool(c.max_exponent, c.max_result_digits, c.max_expression_chars)
    if name == "search":
        s = cfg.search
        return SearchTool.from_jsonl(
            s.corpus_path, top_k=s.top_k, k1=s.k1, b=s.b, max_passage_chars=s.max_passage_chars
        )
    raise ValueError(f"unknown tool {name!r}; choose from python, calculator, search")


def build_tools(cfg: ToolsConfig) -> dict[str, Tool]:
    """The enabled tools, by name. Building the Python tool probes the sandbox (once)."""
    return {name: build_tool(name, cfg) for name in cfg.enabled}


def build_syntax(cfg: ToolsConfig) -> CallSyntax:
    common = {"result_template": cfg.result_template, "answer_style": cfg.answer_style}
    if cfg.syntax == "xml":
        return XmlSyntax(cfg.enabled, **common)
    if cfg.syntax == "markdown":
        return MarkdownSyntax(cfg.enabled, result_marker=cfg.markdown_result_marker, **common)
    if cfg.syntax == "hermes":
        return HermesSyntax(cfg.enabled, **common)
    if cfg.syntax == "simpletir":
        return SimpleTirSyntax(cfg.enabled, **common)
    raise ValueError(f"unknown tool call syntax {cfg.syntax!r}; choose xml, markdown or hermes")


def build_cache(cfg: ToolsConfig) -> ToolCache | None:
    if cfg.cache.mode == "off":
        return None
    return ToolCache(cfg.cache.path, cfg.cache.mode)


def build_executor(cfg: ToolsConfig, tools: Mapping[str, Tool] | None = None) -> ToolExecutor:
    """The executor for the enabled tools. In replay mode no tool is built (none is needed)."""
    cache = build_cache(cfg)
    if tools is None:
        tools = {} if cache is not None and cache.mode == "replay" else build_tools(cfg)
    return ToolExecutor(
        tools,
        max_workers=cfg.max_workers,
        call_timeout_s=cfg.call_timeout_s,
        max_result_chars=cfg.max_result_chars,
        cache=cache,
        tool_names=cfg.enabled,
    )
