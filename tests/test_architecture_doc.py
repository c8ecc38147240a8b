"""docs/architecture.md stays true: every ``file.py:name`` it cites exists, every formula module of
docs/methods.md is cited, and its layer table lists the modules tests/test_layers.py checks."""

import ast
import pathlib
import re

import pytest
from test_layers import LAYERS

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()
CITE_RE = re.compile(r"`([a-z_/]+\.py):([A-Za-z_][A-Za-z_0-9.]*)`")


def _defined_names(path: pathlib.Path) -> set[str]:
    """Top-level functions/classes/assignments and ``Class.method`` names of a module."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                names |= {f"{node.name}.{n.name}" for n in node.body
                          if isinstance(n, ast.FunctionDef)}
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


METHODS = (ROOT / "docs" / "methods.md").read_text()


@pytest.mark.parametrize("doc", ["architecture", "methods"])
def test_every_cited_function_exists(doc):
    cites = CITE_RE.findall(DOC if doc == "architecture" else METHODS)
    assert len(cites) > (40 if doc == "architecture" else 15)
    missing = []
    for file, name in cites:
        path = ROOT / "toolrl_jax" / file
        if not path.is_file():
            missing.append(f"{file} (no such file)")
        elif name not in _defined_names(path):
            missing.append(f"{file}:{name}")
    assert not missing, f"docs/{doc}.md cites what the code does not have: {missing}"


def test_every_formula_in_methods_is_on_the_architecture_map():
    in_methods = {f"{f}:{n}" for f, n in CITE_RE.findall(METHODS)}
    in_map = {f"{f}:{n}" for f, n in CITE_RE.findall(DOC)}
    assert in_methods <= in_map, f"add to docs/architecture.md's formula table: {in_methods - in_map}"


def test_layer_table_matches_the_layer_test():
    for prefix, layer in LAYERS.items():
        if prefix == "toolrl_jax":
            continue
        rel = prefix.removeprefix("toolrl_jax.").replace(".", "/")
        row = next((line for line in DOC.splitlines() if line.startswith(f"| {layer} |")), None)
        assert row is not None, f"no row for layer {layer}"
        short = rel.split("/")[-1]
        assert short in row, f"layer {layer} row does not mention {rel}"
