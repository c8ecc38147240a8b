"""Generic ConfigDict -> frozen dataclass conversion with errors that name the key.

Every section of the schema is a frozen dataclass whose fields declare the knob, its type and its
default exactly once. ``build`` walks the dataclass, rejects unknown keys (suggesting the closest
allowed one), coerces ints to floats where a float is declared, and otherwise refuses a value of the
wrong type. Sections may define ``validate(self, path)`` for cross-field rules (heads dividing the
model dim, …); it raises :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A bad config key or value. ``str(e)`` is one line that names the key."""


def _suggest(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{hint}; allowed keys: {', '.join(sorted(allowed))}"


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, path: str) -> Any:
    """Checks ``value`` against the declared type ``tp`` and returns it in canonical form."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{path}={value!r} is not allowed; choose one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(tp):
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return coerce(value, arm, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{path}: bad value {value!r}")
    if origin in (tuple, list):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ConfigError(f"{path}={value!r} must be a sequence")
        args = typing.get_args(tp)
        items = list(value)
        if args and args[-1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(items))
        if args and len(args) != len(items):
            raise ConfigError(f"{path}={value!r} must have {len(args)} items")
        return tuple(coerce(v, a, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, items, strict=False)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}={value!r} must be a bool (True/False)")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}={value!r} must be an int")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}={value!r} must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}={value!r} must be a string")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{path}: unsupported declared type {_type_name(tp)}")


def build(cls: type, data: Any, path: str = "config") -> Any:
    """Builds dataclass ``cls`` from a mapping (ConfigDict or dict), validating as it goes."""
    if data is None:
        data = {}
    if not hasattr(data, "keys"):
        raise ConfigError(f"{path} must be a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data.keys():
        if key not in fields:
            raise ConfigError(f"unknown config key '{path}.{key}'{_suggest(key, list(fields))}")
    kwargs = {}
    for name in fields:
        tp = hints[name]
        sub = f"{path}.{name}"
        if name not in data:
            continue
        value = data[name]
        if _is_dataclass_type(tp):
            kwargs[name] = build(tp, value, sub)
        else:
            kwargs[name] = coerce(value, tp, sub)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(path)
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain nested dict (for logging and for writing next to checkpoints)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    return obj


def require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)
