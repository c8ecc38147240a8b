"""configs/bfcl_eval.py end to end on a tiny random model: BFCL prompts with their own tools are
generated, graded by the AST checker and reported per category (the path, not the numbers)."""

import json

from toolrl_jax import main as main_lib
from toolrl_jax.testing.tiny_run import tiny_overrides

CONFIG = "configs/bfcl_eval.py"


def _argv(overrides):
    overrides = dict(overrides)
    args = ["--config", CONFIG, "--workdir", overrides.pop("workdir")]
    return args + [f"--config.{k}={v}" for k, v in overrides.items()]


def test_bfcl_eval_runs_every_category(tmp_path, capsys):
    o = tiny_overrides(str(tmp_path), **{"sft.steps": 1, "rollout.max_prompt_len": 2560,
                                         "rollout.max_cache_len": 2624, "eval.max_items": 2,
                                         "model.max_position": 4096})
    assert main_lib.run(_argv({**o, "mode": "sft"})) == 0
    assert main_lib.run(_argv(o)) == 0
    result = json.loads((tmp_path / "eval_policy.json").read_text())
    bench = result["benchmarks"]
    assert set(bench) == {"simple_python", "multiple", "parallel", "parallel_multiple",
                          "irrelevance"}
    for name, res in bench.items():
        assert res["all"]["items"] == 2 and res[name]["items"] == 2
        assert res["all"]["prompts_too_long"] == 0  # every item was generated
        assert res["all"]["tokens"] > 0
    out = capsys.readouterr().out
    assert "eval[policy] parallel_multiple: accuracy=" in out
