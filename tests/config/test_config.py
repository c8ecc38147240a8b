"""Typed config: every shipped config loads; bad keys and values give one clear line."""

import glob
import os
import subprocess
import sys

import pytest

from toolrl_jax import config as config_lib
from toolrl_jax.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_shipped_config_loads(path):
    cfg = config_lib.load(path)
    assert cfg.name != "unnamed"


def test_shipped_configs_have_a_docstring_with_the_command():
    for path in CONFIGS:
        src = open(path).read()
        assert "python -m toolrl_jax.main --config configs/" in src, path


def test_frozen():
    cfg = config_lib.load(os.path.join(ROOT, "configs", "tiny.py"))
    with pytest.raises(AttributeError):
        cfg.model.num_layers = 3


def test_override_types_and_coercion():
    path = os.path.join(ROOT, "configs", "tiny.py")
    cfg = config_lib.load(path, {"model.num_layers": 3, "optim.learning_rate": 1})
    assert cfg.model.num_layers == 3 and cfg.optim.learning_rate == 1.0
    overrides, rest = config_lib.parse_overrides(["--config.model.dtype=bfloat16", "--workdir", "x"])
    assert overrides == {"model.dtype": "bfloat16"} and rest == ["--workdir", "x"]


@pytest.mark.parametrize(
    "override, message",
    [
        ({"modle.layers": 2}, "unknown config key 'config.modle' (did you mean 'mode'?)"),
        ({"model.layers": 2}, "unknown config key 'config.model.layers' (did you mean 'num_layers'"),
        ({"model.num_heads": 3}, "config.model.num_heads=3 must divide config.model.hidden_size=64"),
        ({"model.num_kv_heads": 3}, "config.model.num_kv_heads=3 must divide"),
        ({"model.dtype": "float8"}, "config.model.dtype='float8' is not allowed; choose one of"),
        ({"model.num_layers": "two"}, "config.model.num_layers='two' must be of type int"),
        ({"rollout.temperature": 0.0}, "config.rollout.temperature=0.0 must be > 0"),
        ({"train.loggers": ("nope",)},
         "config.train.loggers: unknown logger 'nope'; choose from ['jsonl', 'tensorboard', 'wandb']"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        config_lib.load(os.path.join(ROOT, "configs", "tiny.py"), override)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_key_in_config_dict():
    cd = config_lib.default_config_dict()
    cd.model.unlocked = True  # ConfigDict allows new keys; our schema must not
    with pytest.raises(ConfigError, match="unknown config key 'config.model.unlocked'"):
        config_lib.from_config_dict(cd)


def _cli(*args, devices=1):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return subprocess.run([sys.executable, "-m", "toolrl_jax.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.modle.layers=2"], "error: unknown config key 'config.modle'"),
        (["--config.model.num_heads=3"], "error: config.model.num_heads=3 must divide"),
        (["--config.mesh.data=4"], "error: config.mesh: data*fsdp*tensor=4 exceeds the 1 available"),
    ],
)
def test_cli_errors_are_one_line_no_traceback(args, message):
    out = _cli("--config", "configs/tiny.py", *args)
    assert out.returncode == 2
    assert out.stderr.strip().startswith(message), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr


def test_plan_mode_real_size_on_cpu():
    out = _cli("--config", "configs/qwen2_5_0_5b.py", "--config.mesh.fsdp=4",
               "--config.mesh.tensor=2", devices=8)
    assert out.returncode == 0, out.stderr
    assert "parameters: 494,032,768" in out.stdout  # Qwen2.5-0.5B's published size
    assert "mesh: data=1, fsdp=4, tensor=2" in out.stdout
    assert "layers.0.mlp.gate_proj" in out.stdout and "P('fsdp', 'tensor')" in out.stdout
    assert "KV cache" in out.stdout and "optimizer (AdamW)" in out.stdout


def test_group_size_one_is_refused_at_load():
    with pytest.raises(ConfigError, match=r"rollout.group_size=1 must be >= 2.*every advantage is 0"):
        config_lib.load(os.path.join(ROOT, "configs", "demo.py"), {"rollout.group_size": 1})


@pytest.mark.parametrize("key, value", [
    ("reward", "bogus"), ("advantage", "bogus"), ("shaping", "bogus"), ("loss_agg", "bogus"),
    ("kl_estimator", "bogus"), ("autotool_entropy_gate", "bogus"),
    ("filters", ("zero_variance", "bogus")),
])
def test_unknown_rl_component_names_fail_at_load_with_the_choices(key, value):
    from toolrl_jax.config.rl import choices

    with pytest.raises(ConfigError) as e:
        config_lib.load(os.path.join(ROOT, "configs", "tiny.py"), {f"rl.{key}": value})
    msg = str(e.value)
    assert f"config.rl.{key}" in msg and "'bogus'" in msg, msg
    assert f"choose one of {choices(key)}" in msg and "\n" not in msg


def test_rl_component_names_come_from_the_registry():
    from toolrl_jax.config.rl import COMPONENT_TABLES, choices
    from toolrl_jax.rl import registry

    assert {id(t) for t in COMPONENT_TABLES.values()} == {id(t) for t in registry.TABLES}
    for key in COMPONENT_TABLES:
        for name in choices(key):
            if name in ("tepo_dense", "tepo_tool"):  # only valid together (tested in tests/rl)
                continue
            value = (name,) if key == "filters" else name
            cfg = config_lib.load(os.path.join(ROOT, "configs", "tiny.py"), {f"rl.{key}": value})
            assert getattr(cfg.rl, key) == value
