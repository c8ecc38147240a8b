"""Tools section of the config: call syntax, enabled tools and sandbox limits.

Owned by toolrl_jax/tools/. Every knob is declared here once.
"""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class ToolsConfig:
    syntax: Literal["xml", "markdown", "hermes"] = "xml"
    enabled: tuple[str, ...] = ("python", "calculator")
