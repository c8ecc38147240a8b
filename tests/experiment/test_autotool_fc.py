"""configs/autotool_fc.py made tiny (CI smoke): SFT warm-up in the auto-think template + AutoTool
RL on synthetic function calling, a report of held-out accuracy, thinking rate and tokens per
difficulty for SFT vs RL, and mode=label over the same function-calling items."""

import json
import os

from toolrl_jax import config as config_lib
from toolrl_jax import main as main_lib
from toolrl_jax.data.labels import read_labels
from toolrl_jax.data.prompts import MODE_TAG_INSTRUCTION
from toolrl_jax.data.tokenizer import load_tokenizer
from toolrl_jax.testing.tiny_run import FUNCTION_CALLING_OVERRIDES, tiny_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "autotool_fc.py")


def _argv(overrides):
    overrides = dict(overrides)
    args = ["--config", CONFIG, "--workdir", overrides.pop("workdir")]
    return args + [f"--config.{k}={v}" for k, v in overrides.items()]


def test_config_is_autotool_on_function_calling():
    cfg = config_lib.load(CONFIG)
    assert cfg.mode == "pipeline" and cfg.data.tasks == ("function_call",)
    assert (cfg.tools.syntax, cfg.tools.enabled) == ("hermes", ())
    assert cfg.rl.recipe == "autotool" and cfg.sft.mode_tag
    assert cfg.sft.steps > 0 and cfg.train.steps > 0


def test_autotool_fc_runs_and_reports_per_difficulty(tmp_path):
    o = tiny_overrides(str(tmp_path), **{"sft.steps": 2, "train.steps": 1, "eval.max_items": 8,
                                         "eval.prompts_per_batch": 8,
                                         **FUNCTION_CALLING_OVERRIDES})
    assert main_lib.run(_argv(o)) == 0
    for name in ("eval_sft", "eval_rl"):
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["all"]["items"] == 8 and result["all"]["prompts_too_long"] == 0
        for bucket in ("easy", "hard"):
            assert {"accuracy", "tokens", "think_rate"} <= set(result[bucket])
    report = (tmp_path / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| policy | bucket"))
    assert {"accuracy", "tokens", "think_rate"} <= {c.strip() for c in header.split("|")}
    for policy in ("sft", "rl"):
        for bucket in ("all", "easy", "hard"):
            assert f"| {policy} | {bucket} |" in report
    # RL prompts described each item's own functions (Hermes <tools>), in the auto-think template.
    tokenizer = load_tokenizer(tmp_path / "tokenizer")
    rollouts = [json.loads(line) for f in sorted((tmp_path / "rollouts").glob("*.jsonl"))
                for line in f.read_text().splitlines()]
    assert rollouts
    for r in rollouts:
        prompt = tokenizer.decode(r["tokens"][: r["prompt_len"]])
        assert "<tools>" in prompt and MODE_TAG_INSTRUCTION in prompt

    # The run's SFT policy labels its own function-calling train items.
    assert main_lib.run(_argv({**o, "mode": "label", "label.samples": 2,
                               "label.max_items": 4, "label.prompts_per_batch": 2})) == 0
    labels = read_labels(str(tmp_path / "labels.jsonl"))
    assert len(labels) == 4
    assert all(lab.task == "function_call" and lab.samples == 2 for lab in labels.values())
