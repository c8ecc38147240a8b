"""Tools section of the config: call syntax, enabled tools, sandbox limits, executor and cache.

Owned by toolrl_jax/tools/. Every knob is declared here once, with its default and the reason for
it; ``validate`` raises :class:`ConfigError` naming the key (``config.tools.python.timeout_s``).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from toolrl_jax.config.core import require

# The tools toolrl_jax ships; ``tools.enabled`` picks from these (see tools/registry.py).
KNOWN_TOOLS = ("python", "calculator", "search")


@dataclasses.dataclass(frozen=True)
class PythonToolConfig:
    """Sandboxed Python interpreter (tools/python_tool.py, tools/sandbox/)."""

    # Sandbox backend (tools/sandbox/backends.py). 'auto' = bwrap (bubblewrap, a requirement:
    # private read-only root, per-call tmpfs, no network, own pid/user namespaces, seccomp); it
    # refuses to start when bubblewrap does not work. 'unshare' (no network, own pid namespace)
    # and 'rlimit' (rlimits only) leave the host file system and more uncontained: they run only
    # when named here, with a one-line warning saying what is not contained.
    sandbox: Literal["auto", "bwrap", "unshare", "rlimit"] = "auto"
    # Interpreter for model code; empty: this process's interpreter (sys.executable). When the
    # trainer runs as root the code runs as ``sandbox_uid`` instead, and an empty value falls back
    # to /usr/bin/python3 if that uid cannot run sys.executable (e.g. pyenv under /root).
    executable: str = ""
    sandbox_uid: int = 65534  # 'nobody': the uid/gid model code runs as when the trainer is root
    timeout_s: float = 5.0  # wall clock per call; the whole process group is killed after it
    cpu_s: int = 5  # RLIMIT_CPU (seconds of CPU time)
    # RLIMIT_AS (address space); numpy + a few arrays fit in 1 GiB. Under bwrap a call is one
    # process (seccomp refuses fork) so this bounds the call's memory; with allow_subprocess the
    # bound is max_processes x memory_mb (no cgroup is used).
    memory_mb: int = 1024
    max_open_files: int = 64  # RLIMIT_NOFILE (per process)
    # RLIMIT_NPROC: processes + threads of one call (bwrap: its own user namespace, so concurrent
    # calls do not share it; other backends count every call of the uid together).
    max_processes: int = 64
    max_file_mb: int = 16  # RLIMIT_FSIZE: largest file the code may write
    # bwrap: size of the call's tmpfs (its working dir and only writable place: all its files
    # together). It is RAM, so max_workers calls may hold max_workers x disk_mb at once.
    disk_mb: int = 64
    capture_bytes: int = 65536  # stdout+stderr kept; past this the program is stopped
    # A call that wrote anything to stderr is failed (status error) even when it exited 0 — a
    # warning, a logged message, a print(file=sys.stderr) — as TAO-RL's released code counts
    # executions; the model still sees what it printed. None: the RL recipe's preset
    # (RECIPE_TOOL_PRESETS: on for tao_rl, off otherwise; off for a tool built outside a run).
    stderr_fails: bool | None = None
    # Model code may not start processes by default: fork bombs then fail at once, whatever the
    # backend. True is only accepted when the code runs under a non-root uid (RLIMIT_NPROC holds).
    allow_subprocess: bool = False
    # Like a notebook: if the last statement is an expression, print its repr (models often end
    # with a bare ``x`` and expect to see it).
    echo_last_expression: bool = True
    # unshare / rlimit: parent of the per-call host temp dirs; empty: the system temp dir.
    workdir_root: str = ""
    # The prelude's audit hook (PEP 578): clear messages for refused writes, sockets, processes.
    # A convenience only: every containment holds with it off (the tests check both ways).
    audit_hook: bool = True

    def validate(self, path: str) -> None:
        require(self.timeout_s > 0, f"{path}.timeout_s={self.timeout_s} must be > 0")
        require(self.cpu_s > 0, f"{path}.cpu_s={self.cpu_s} must be > 0")
        require(self.memory_mb >= 64, f"{path}.memory_mb={self.memory_mb} must be >= 64")
        require(self.max_open_files >= 16, f"{path}.max_open_files must be >= 16")
        require(self.max_processes >= 1, f"{path}.max_processes must be >= 1")
        require(self.max_file_mb >= 0, f"{path}.max_file_mb must be >= 0")
        require(self.disk_mb >= 1, f"{path}.disk_mb={self.disk_mb} must be >= 1")
        require(self.capture_bytes >= 256, f"{path}.capture_bytes must be >= 256")
        require(self.sandbox_uid > 0, f"{path}.sandbox_uid={self.sandbox_uid} must be > 0 (not root)")


# The tool settings of a recipe's released code, filled into ``tools.python.<key>`` where the
# config leaves it None (:meth:`ToolsConfig.for_recipe`); the RL settings of the same presets are
# config/rl.py:RECIPE_PRESETS. TAO-RL (recipe/tao_rl/agent_utils.py, execute_predictions): any
# stderr output makes the execution invalid.
RECIPE_TOOL_PRESETS: dict[str, dict[str, bool]] = {"tao_rl": {"stderr_fails": True}}
_TOOL_PRESET_DEFAULTS: dict[str, bool] = {"stderr_fails": False}


@dataclasses.dataclass(frozen=True)
class CalculatorConfig:
    """Safe arithmetic evaluator (tools/calculator.py)."""

    max_exponent: int = 10000  # |b| in a**b; bigger exponents are refused, not computed
    max_result_digits: int = 4000  # integer results longer than this are refused
    max_expression_chars: int = 2000

    def validate(self, path: str) -> None:
        require(self.max_exponent > 0, f"{path}.max_exponent must be > 0")
        # Python refuses str() of ints above 4300 digits (CVE-2020-10735 guard).
        require(
            0 < self.max_result_digits <= 4300,
            f"{path}.max_result_digits={self.max_result_digits} must be in [1, 4300]",
        )
        require(self.max_expression_chars > 0, f"{path}.max_expression_chars must be > 0")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """BM25 search over a local JSONL corpus of {"id", "title", "text"} passages (tools/search.py)."""

    # Required when "search" is enabled. "@generated": the corpus the synthetic lookup task writes
    # into the run's work dir (<workdir>/corpus.jsonl), resolved at start-up.
    corpus_path: str = ""
    top_k: int = 3
    k1: float = 1.5  # BM25 term-frequency saturation (Lucene default 1.2-2.0)
    b: float = 0.75  # BM25 length normalisation
    max_passage_chars: int = 600  # each passage is cut to this many characters for the model

    def validate(self, path: str) -> None:
        require(self.top_k > 0, f"{path}.top_k={self.top_k} must be > 0")
        require(self.k1 >= 0, f"{path}.k1 must be >= 0")
        require(0 <= self.b <= 1, f"{path}.b={self.b} must be in [0, 1]")
        require(self.max_passage_chars > 0, f"{path}.max_passage_chars must be > 0")


@dataclasses.dataclass(frozen=True)
class ToolCacheConfig:
    """Record/replay of tool results (tools/cache.py): replay a rollout without running tools."""

    mode: Literal["off", "record", "replay"] = "off"
    path: str = ""  # JSONL file; required unless mode='off'

    def validate(self, path: str) -> None:
        if self.mode != "off":
            require(bool(self.path), f"{path}.path must be set when {path}.mode='{self.mode}'")


@dataclasses.dataclass(frozen=True)
class ToolsConfig:
    # How the model writes calls: <python>…</python> tags, ```python fences, or Hermes/Qwen
    # <tool_call>{json}</tool_call>.
    # "simpletir": SimpleTIR / TAO-RL's format (fences, "Code execution result:", \boxed{}).
    syntax: Literal["xml", "markdown", "hermes", "simpletir"] = "xml"
    enabled: tuple[str, ...] = ("python", "calculator")
    # Text appended after a call; must contain '{result}'. Empty: the syntax's default
    # ("\n<result>\n{result}\n</result>\n", "\n```output\n{result}\n```\n",
    #  "\n<tool_response>\n{result}\n</tool_response>\n").
    result_template: str = ""
    markdown_result_marker: str = "output"  # info string of the fence that holds a result
    # Where the final answer is read from: <answer>…</answer>, the last \boxed{…}, or either.
    answer_style: Literal["tag", "boxed", "tag_or_boxed"] = "tag"
    max_result_chars: int = 2000  # any tool's text is cut to this (head and tail kept)
    max_workers: int = 8  # executor threads: calls of one batch that run at once
    call_timeout_s: float = 30.0  # executor backstop per call, on top of each tool's own limits
    python: PythonToolConfig = PythonToolConfig()
    calculator: CalculatorConfig = CalculatorConfig()
    search: SearchConfig = SearchConfig()
    cache: ToolCacheConfig = ToolCacheConfig()

    def for_recipe(self, recipe: str) -> ToolsConfig:
        """This config with every None tool setting set as ``recipe``'s released code has it."""
        preset = {**_TOOL_PRESET_DEFAULTS, **RECIPE_TOOL_PRESETS.get(recipe, {})}
        fill = {k: v for k, v in preset.items() if getattr(self.python, k) is None}
        return dataclasses.replace(self, python=dataclasses.replace(self.python, **fill))

    def validate(self, path: str) -> None:
        for name in self.enabled:
            require(
                name in KNOWN_TOOLS,
                f"{path}.enabled: unknown tool '{name}'; choose from {list(KNOWN_TOOLS)}",
            )
        require(
            len(set(self.enabled)) == len(self.enabled),
            f"{path}.enabled={list(self.enabled)} lists a tool twice",
        )
        if self.result_template:
            require(
                "{result}" in self.result_template,
                f"{path}.result_template must contain '{{result}}'",
            )
        require(
            bool(self.markdown_result_marker.strip()) and "`" not in self.markdown_result_marker,
            f"{path}.markdown_result_marker={self.markdown_result_marker!r} must be a non-empty "
            "word without backticks",
        )
        require(self.max_result_chars >= 64, f"{path}.max_result_chars must be >= 64")
        require(self.max_workers > 0, f"{path}.max_workers must be > 0")
        require(self.call_timeout_s > 0, f"{path}.call_timeout_s must be > 0")
        if "search" in self.enabled:
            require(
                bool(self.search.corpus_path),
                f"{path}.search.corpus_path must be set when 'search' is in {path}.enabled",
            )
