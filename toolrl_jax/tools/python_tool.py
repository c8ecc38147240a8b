"""The ``python`` tool: runs model-written code in a sandbox and reports what it printed.

Status mapping (what filters and metrics see):

* ``ok`` — exit 0 with output; ``empty`` — exit 0 but nothing printed (the model learns nothing);
* ``error`` — an exception (the traceback is the text), a crash, or output past the capture cap;
  with ``stderr_fails`` also any call that wrote to stderr (TAO-RL), its output shown as usual;
* ``timeout`` — the wall-clock limit or the CPU-time rlimit was hit;
* ``invalid_call`` — no ``code`` argument or only whitespace.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from typing import Any

from toolrl_jax.config.tools import PythonToolConfig
from toolrl_jax.tools.base import ToolResult, string_argument
from toolrl_jax.tools.sandbox import SandboxPlan, run_code, select_plan
from toolrl_jax.types import ToolStatus


class PythonTool:
    name = "python"
    description = (
        "Runs a Python 3 script in a fresh sandbox (no network, no files kept between calls) and "
        "returns what it printed. Use print() to show results; the value of a final bare "
        "expression is shown too."
    )
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "Python source to run"}},
        "required": ["code"],
    }

    def __init__(self, cfg: PythonToolConfig | None = None, plan: SandboxPlan | None = None):
        cfg = cfg if cfg is not None else PythonToolConfig()
        self.cfg = cfg
        # Probing happens here, once, so a machine without any usable sandbox fails at start-up.
        self.plan = plan if plan is not None else select_plan(cfg)

    @property
    def backend(self) -> str:
        """Human-readable description of the sandbox in use (logged at start-up)."""
        return self.plan.describe()

    def call(self, args: Mapping[str, Any]) -> ToolResult:
        start = time.monotonic()
        code = string_argument(args, "code", self.name)
        if isinstance(code, ToolResult):
            return code
        if not code.strip():
            return ToolResult(ToolStatus.INVALID_CALL, "python: empty code; nothing was run")
        out = run_code(self.plan, code, self.cfg)
        text = out.output.rstrip("\n")
        status = ToolStatus.OK
        if out.timed_out:
            status = ToolStatus.TIMEOUT
            text += f"\nTimeoutError: execution exceeded the {self.cfg.timeout_s:g} s time limit"
        elif out.output_overflow:
            status = ToolStatus.ERROR
            text += (f"\n[output truncated: more than {self.cfg.capture_bytes} bytes printed; "
                     "the program was stopped]")
        elif out.signal is not None:
            if out.signal in (signal.SIGXCPU, signal.SIGKILL):
                status = ToolStatus.TIMEOUT
                text += f"\nTimeoutError: CPU time limit of {self.cfg.cpu_s} s exceeded"
            else:
                status = ToolStatus.ERROR
                text += f"\nprocess killed by signal {_signal_name(out.signal)}"
        elif out.returncode != 0:
            status = ToolStatus.ERROR
            if not text:
                text = f"process exited with status {out.returncode}"
        elif self.cfg.stderr_fails and out.stderr_bytes:
            status = ToolStatus.ERROR
        elif not text:
            status = ToolStatus.EMPTY
            text = "(no output: use print() to show results)"
        return ToolResult(
            status, text.lstrip("\n"), truncated=out.output_overflow,
            elapsed_s=time.monotonic() - start,
        )


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)
