"""Tools for tool-using agents: call syntaxes, sandboxed Python, calculator, BM25 search, and an
executor with timeouts and record/replay. Never imports jax (layer L2).

What the rollout engine uses::

    tools    = build_tools(cfg.tools)             # {"python": PythonTool, ...}; probes the sandbox
    syntax   = build_syntax(cfg.tools)            # stop_strings, find_call_end, parse_last_call,
                                                  # format_result, answer_style
    executor = build_executor(cfg.tools, tools)   # run([ParsedCall | InvalidCall, ...]) -> results
"""

from toolrl_jax.tools.base import (
    InvalidCall,
    ParsedCall,
    Tool,
    ToolResult,
    function_spec,
    truncate_middle,
)
from toolrl_jax.tools.bm25 import BM25Index
from toolrl_jax.tools.cache import ToolCache, cache_key
from toolrl_jax.tools.calculator import CalculatorTool, SafeEvaluator
from toolrl_jax.tools.executor import ToolExecutor
from toolrl_jax.tools.python_tool import PythonTool
from toolrl_jax.tools.registry import (
    build_cache,
    build_executor,
    build_syntax,
    build_tool,
    build_tools,
)
from toolrl_jax.tools.sandbox import SandboxUnavailable
from toolrl_jax.tools.search import Passage, SearchTool, load_corpus
from toolrl_jax.tools.syntax import CallSyntax, HermesSyntax, MarkdownSyntax, XmlSyntax

__all__ = [
    "BM25Index", "CalculatorTool", "CallSyntax", "HermesSyntax", "InvalidCall", "MarkdownSyntax",
    "ParsedCall", "Passage", "PythonTool", "SafeEvaluator", "SandboxUnavailable", "SearchTool",
    "Tool", "ToolCache", "ToolExecutor", "ToolResult", "XmlSyntax", "build_cache",
    "build_executor", "build_syntax", "build_tool", "build_tools", "cache_key", "function_spec",
    "load_corpus", "truncate_middle",
]
