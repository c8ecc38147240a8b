"""``eval.think_modes`` end to end on a tiny random model (``python -m toolrl_jax.main``): every
mode is evaluated, forced modes are scored as forced whatever the model writes, and the results
are laid out per mode. With ``sft.mode_tag`` the warm-up and the evaluation prompts agree."""

import json
import os

from toolrl_jax import main as main_lib
from toolrl_jax.testing.tiny_run import tiny_overrides

DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "configs", "demo.py")


def _argv(overrides):
    overrides = dict(overrides)
    args = ["--config", DEMO, "--workdir", overrides.pop("workdir")]
    return args + [f"--config.{k}={v}" for k, v in overrides.items()]


def test_every_think_mode_is_evaluated_and_scored_as_forced(tmp_path, capsys):
    o = tiny_overrides(str(tmp_path), **{"sft.steps": 1, "sft.mode_tag": True,
                                         "eval.max_items": 4, "rollout.max_prompt_len": 208,
                                         "rollout.max_cache_len": 352})
    assert main_lib.run(_argv({**o, "mode": "sft"})) == 0
    assert main_lib.run(_argv({**o, "mode": "eval", "eval.think_modes": "no_think,auto,think"})) == 0
    result = json.loads((tmp_path / "eval_policy.json").read_text())
    modes = result["think_modes"]
    assert list(modes) == ["no_think", "auto", "think"]
    assert result["_meta"]["think_modes"] == ["no_think", "auto", "think"]
    assert result["all"] == modes["no_think"]["all"]  # the first mode is the headline
    for mode, res in modes.items():
        assert res["all"]["items"] == 4 and res["all"]["prompts_too_long"] == 0, mode
    # Forced modes are the mode of every completion, whatever a random model writes after them.
    for bucket in ("all", "easy", "hard"):
        if bucket in modes["think"]:
            assert modes["think"][bucket]["think_rate"] == 1.0
            assert modes["no_think"][bucket]["think_rate"] == 0.0
    out = capsys.readouterr().out
    assert "eval[policy][think]: accuracy=" in out and "eval[policy][no_think]:" in out
