"""SimpleTIR's format (the one TAO-RL trains with): code in a Markdown fence, results as plain
``Code execution result: …`` lines, the final answer in ``\\boxed{}``::

    ```python
    print(2 + 2)
    ```
    Code execution result: 4

Every fenced block is Python code, whatever its info string (``py``, ``python`` or none), as in
SimpleTIR / TAO-RL's ``agent_utils.execute_predictions`` (pattern ```` ```(?:py|python)?\\n…\\n``` ````).
The result is not fenced, so a closing fence always ends a call. Answers must be boxed: a
``tools.answer_style='tag'`` config is refused rather than silently changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from toolrl_jax.tools.syntax.markdown import MarkdownSyntax
from toolrl_jax.verifiers import AnswerStyle

# TAO-RL's observation text (agent_utils: f"\nCode execution result: {output}\n").
RESULT_TEMPLATE = "\nCode execution result: {result}\n"
_CODE_INFOS = ("", "py", "python", "python3")


class SimpleTirSyntax(MarkdownSyntax):
    name = "simpletir"

    def __init__(
        self,
        tool_names: Sequence[str],
        *,
        result_template: str = "",
        answer_style: AnswerStyle = "boxed",
    ):
        if answer_style == "tag":
            raise ValueError("the SimpleTIR format answers in \\boxed{}: set "
                             "tools.answer_style='boxed' (or 'tag_or_boxed')")
        if "python" not in tool_names:
            raise ValueError("the SimpleTIR format runs Python code: enable the 'python' tool")
        super().__init__(tool_names, result_template=result_template or RESULT_TEMPLATE,
                         answer_style=answer_style)
        self.default_result_template = RESULT_TEMPLATE

    def _tool_of(self, info: str) -> str | None:
        return "python" if info.lower() in _CODE_INFOS else None

    def describe(self, tools: Mapping[str, str]) -> str:
        return ("Solve the problem step by step. You may write executable Python code in a "
                "fenced block (```python ... ```); it is run in a sandbox and its printed output "
                "comes back after \"Code execution result:\". Use print() to see values. Put the "
                "final answer in \\boxed{}.")
