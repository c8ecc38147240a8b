"""RL section of the config: recipe choice and the knobs of its components.

Owned by the RL core (toolrl_jax/rl/). Every knob is declared here once.
"""

from __future__ import annotations

import dataclasses

from toolrl_jax.config.core import require


@dataclasses.dataclass(frozen=True)
class RLConfig:
    recipe: str = "grpo"

    def validate(self, path: str) -> None:
        require(bool(self.recipe), f"{path}.recipe must be set")
