"""Typed, frozen config built once from ``configs/<name>.py`` (a ``ml_collections.ConfigDict``).

Library code receives these dataclasses and never reads a ConfigDict. ``from_config_dict`` raises
:class:`ConfigError` with one line that names the bad key and what is allowed.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import ml_collections

from toolrl_jax.config.core import ConfigError, build, require, to_dict
from toolrl_jax.config.data import DataConfig
from toolrl_jax.config.loader import (
    apply_override,
    load_config_dict,
    parse_overrides,
    sibling_config,
)
from toolrl_jax.config.rl import RLConfig
from toolrl_jax.config.schema import (
    CompareConfig,
    EvalConfig,
    LabelConfig,
    MeshConfig,
    ModelConfig,
    OptimConfig,
    PlanConfig,
    RolloutConfig,
    RopeScalingConfig,
    SFTConfig,
    TrainConfig,
)
from toolrl_jax.config.tools import ToolsConfig

Mode = Literal["plan", "sft", "rl", "eval", "pipeline", "compare", "label"]


@dataclasses.dataclass(frozen=True)
class Config:
    mode: Mode = "plan"
    name: str = "unnamed"
    workdir: str = ""  # empty: ./runs/<name>
    model: ModelConfig = ModelConfig()
    mesh: MeshConfig = MeshConfig()
    optim: OptimConfig = OptimConfig()
    rollout: RolloutConfig = RolloutConfig()
    train: TrainConfig = TrainConfig()
    rl: RLConfig = RLConfig()
    tools: ToolsConfig = ToolsConfig()
    data: DataConfig = DataConfig()
    sft: SFTConfig = SFTConfig()
    eval: EvalConfig = EvalConfig()
    compare: CompareConfig = CompareConfig()
    plan: PlanConfig = PlanConfig()
    label: LabelConfig = LabelConfig()

    def validate(self, path: str) -> None:
        from toolrl_jax.config.rl import RECIPE_PRESETS as RECIPES

        for name in self.compare.recipes:
            require(name in RECIPES,
                    f"{path}.compare.recipes: unknown recipe '{name}'; "
                    f"choose from {sorted(RECIPES)}")
        require(
            self.rollout.max_cache_len <= self.model.max_position,
            f"{path}.rollout.max_cache_len={self.rollout.max_cache_len} exceeds "
            f"{path}.model.max_position={self.model.max_position}",
        )


def from_config_dict(cd: ml_collections.ConfigDict | dict) -> Config:
    return build(Config, cd, "config")


def load(path: str, overrides: dict | None = None) -> Config:
    """Loads a config file, applies dotted overrides, and returns the validated Config."""
    cd = load_config_dict(path)
    for key, value in (overrides or {}).items():
        apply_override(cd, key, value)
    return from_config_dict(cd)


def default_config_dict() -> ml_collections.ConfigDict:
    """The full schema with its defaults, as a ConfigDict: the base every configs/*.py edits."""
    return ml_collections.ConfigDict(to_dict(Config()))


__all__ = [
    "CompareConfig", "Config", "ConfigError", "DataConfig", "EvalConfig", "LabelConfig",
    "SFTConfig", "MeshConfig",
    "ModelConfig", "OptimConfig", "PlanConfig", "RLConfig",
    "RolloutConfig", "RopeScalingConfig", "ToolsConfig", "TrainConfig", "build", "from_config_dict",
    "load", "parse_overrides", "default_config_dict", "require", "sibling_config", "to_dict",
]
