"""Imports flow one way: no module imports a module of a higher layer (docs/architecture.md).

Walks every ``import`` / ``from … import`` in ``toolrl_jax/`` (function-level imports included)
and checks it against the layer table below — the same table docs/architecture.md shows.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "toolrl_jax"

# Module prefix -> layer; the longest matching prefix wins. A module may import a lower layer,
# or its own package within its layer; never a higher layer, never a sibling package of its layer.
LAYERS = {
    "toolrl_jax": 0,  # the package's __init__: a docstring and the version only
    "toolrl_jax.jsonl": 0,
    "toolrl_jax.types": 1,
    "toolrl_jax.config.core": 2,
    "toolrl_jax.verifiers": 2,
    # The RL math is below the config: the config validates component names against its tables.
    "toolrl_jax.rl.advantages": 2,
    "toolrl_jax.rl.entropy": 2,
    "toolrl_jax.rl.filters": 2,
    "toolrl_jax.rl.losses": 2,
    "toolrl_jax.rl.registry": 2,
    "toolrl_jax.rl.rewards": 2,
    "toolrl_jax.rl.shaping": 2,
    "toolrl_jax.rl.tool_entropy": 2,
    "toolrl_jax.config": 3,
    "toolrl_jax.buckets": 4,
    "toolrl_jax.sharding": 4,
    "toolrl_jax.models": 5,
    "toolrl_jax.fetch": 5,  # model files into the local cache; imports nothing of the package
    "toolrl_jax.tools": 5,
    "toolrl_jax.data": 5,
    "toolrl_jax.rl": 5,  # recipes: binds the config to the math
    "toolrl_jax.rollout": 6,
    "toolrl_jax.scoring": 7,
    "toolrl_jax.train": 8,
    "toolrl_jax.eval": 8,
    "toolrl_jax.experiment": 9,
    "toolrl_jax.testing": 9,
    "toolrl_jax.main": 10,
    "toolrl_jax.testing.multihost": 10,  # drives whole experiments, like main
    "toolrl_jax.testing.multihost_rollout": 10,  # a simulated pod's rollout, beside multihost
}


def layer_of(module: str) -> tuple[int, str]:
    """(layer, matched prefix) of a module; KeyError if the table does not cover it."""
    if module == "toolrl_jax":
        return LAYERS[module], module
    parts = module.split(".")
    for n in range(len(parts), 1, -1):  # the bare package name matches itself only
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix], prefix
    raise KeyError(module)


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def module_name(path: pathlib.Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def project_imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, module) of every toolrl_jax import in a file, at any nesting level."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "toolrl_jax" or node.module.startswith("toolrl_jax."):
                # "from toolrl_jax.rl import registry" imports the submodule, not the package.
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    out.append((node.lineno, sub if _is_module(sub) else node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("toolrl_jax.")]
    return out


def violations(files) -> list[str]:
    found = []
    for path in files:
        src = module_name(path)
        src_layer, _ = layer_of(src)
        for line, target in project_imports(path):
            tgt_layer, _ = layer_of(target)
            same_package = package_of(src) == package_of(target)
            if tgt_layer > src_layer or (tgt_layer == src_layer and not same_package):
                found.append(f"{path.relative_to(ROOT)}:{line}: {src} (layer {src_layer}) "
                             f"imports {target} (layer {tgt_layer})")
    return found


def test_every_module_has_a_layer():
    missing = []
    for path in PACKAGE.rglob("*.py"):
        try:
            layer_of(module_name(path))
        except KeyError:
            missing.append(module_name(path))
    assert not missing, f"add these modules to LAYERS (and docs/architecture.md): {missing}"


def test_no_import_runs_up_a_layer():
    bad = violations(sorted(PACKAGE.rglob("*.py")))
    assert not bad, "imports that run up (or across) a layer:\n" + "\n".join(bad)


def test_the_checker_catches_an_upward_import(tmp_path, monkeypatch):
    # The check itself can fail: a train module importing the experiment layer is reported.
    fake = ROOT / "toolrl_jax" / "train" / "_probe_upward.py"
    monkeypatch.setattr(pathlib.Path, "read_text",
                        lambda self, *a, **k: "from toolrl_jax.experiment.context import Experiment\n"
                        if self == fake else pathlib.Path.read_bytes(self).decode())
    assert violations([fake]) == [
        "toolrl_jax/train/_probe_upward.py:1: toolrl_jax.train._probe_upward (layer 8) imports "
        "toolrl_jax.experiment.context (layer 9)"]
    with pytest.raises(KeyError):
        layer_of("elsewhere.module")
