"""Loads ``configs/<name>.py``, applies ``--config.a.b=value`` overrides, builds the typed Config."""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
from typing import Any

import ml_collections

from toolrl_jax.config.core import ConfigError


def sibling_config(config_file: str, name: str) -> ml_collections.ConfigDict:
    """``configs/<name>.py``'s ConfigDict, for a config file that extends another one
    (``c = sibling_config(__file__, "demo")``): loaded by path, however the caller was loaded."""
    return load_config_dict(os.path.join(os.path.dirname(os.path.abspath(config_file)),
                                         f"{name}.py"))


def load_config_dict(path: str) -> ml_collections.ConfigDict:
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"_toolrl_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a config file is user code: report it in one line
        raise ConfigError(f"{path} failed to import: {type(e).__name__}: {e}") from e
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} has no get_config() function")
    cfg = module.get_config()
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config() must return an ml_collections.ConfigDict")
    return cfg


def parse_value(text: str) -> Any:
    """'2' -> 2, '1e-3' -> 0.001, 'True' -> True, '(1,2)' -> (1, 2), anything else -> the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


def apply_override(cfg: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
    """Sets ``cfg.<dotted> = value``; an unknown key raises ConfigError naming it."""
    parts = dotted.split(".")
    node = cfg
    for i, part in enumerate(parts):
        where = "config." + ".".join(parts[: i + 1])
        keys = list(node.keys()) if hasattr(node, "keys") else []
        if part not in keys:
            close = difflib.get_close_matches(part, keys, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"unknown config key '{where}'{hint}; allowed keys: {', '.join(sorted(keys))}"
            )
        if i == len(parts) - 1:
            old = node[part]
            if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if isinstance(old, (tuple, list)):
                # Sequences: "(0, 1)", "[0, 1]", "a,b" and a single scalar all work.
                if isinstance(value, str):
                    value = [parse_value(v.strip()) for v in value.split(",") if v.strip()]
                elif not isinstance(value, (tuple, list)):
                    value = [value]
                value = type(old)(value)
            if isinstance(old, str) and not isinstance(value, str):
                value = str(value)
            if old is not None and not isinstance(value, type(old)):
                raise ConfigError(
                    f"{where}={value!r} must be of type {type(old).__name__} (like its default "
                    f"{old!r})"
                )
            try:
                node[part] = value
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{where}={value!r}: {e}".replace("\n", " ")) from e
        else:
            node = node[part]


def parse_overrides(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Splits ``--config.a.b=v`` flags out of argv; returns (overrides, remaining argv)."""
    overrides: dict[str, Any] = {}
    rest = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            body = arg[len("--config."):]
            if "=" in body:
                key, text = body.split("=", 1)
            elif i + 1 < len(argv):
                key, text = body, argv[i + 1]
                i += 1
            else:
                raise ConfigError(f"--config.{body} needs a value")
            overrides[key] = parse_value(text)
        else:
            rest.append(arg)
        i += 1
    return overrides, rest
