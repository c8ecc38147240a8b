"""``mode=label`` end to end on a tiny model: k forced no-think samples per train item, labels
that are exactly a function of the verifier's grades (controlled here), the refinement written
beside them, and the warm-up / RL loaders that consume the file."""

import dataclasses
import hashlib
import os

import numpy as np
import pytest

from toolrl_jax import config as config_lib
from toolrl_jax import main as main_lib
from toolrl_jax.data.builders import TaskSource
from toolrl_jax.data.labels import ItemLabel, read_labels, refine
from toolrl_jax.data.modes import forced_prefix
from toolrl_jax.data.pipeline import prompt_loader, sft_loader
from toolrl_jax.data.tokenizer import load_tokenizer
from toolrl_jax.experiment import label as label_mod
from toolrl_jax.experiment.context import Experiment
from toolrl_jax.testing.tiny_run import tiny_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "configs", "demo.py")
K, ITEMS = 3, 10


def _argv(overrides):
    overrides = dict(overrides)
    args = ["--config", DEMO, "--workdir", overrides.pop("workdir")]
    return args + [f"--config.{k}={v}" for k, v in overrides.items()]


def _kind(item_id: str) -> int:
    """The controlled outcome of an item: 0 never passes, 1 only its sample 0, 2 always."""
    return int(hashlib.sha256(item_id.encode()).hexdigest(), 16) % 3


def _passes(item_id: str, sample: int) -> bool:
    kind = _kind(item_id)
    return kind == 2 or (kind == 1 and sample == 0)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    run = tmp_path_factory.mktemp("label_run")
    o = tiny_overrides(str(run), **{"sft.steps": 1, "data.sft_max_len": 512})
    assert main_lib.run(_argv({**o, "mode": "sft"})) == 0
    seen = []
    real = label_mod.score_batch

    def controlled(syntax, trajs, rows, seq_len, max_calls, forced_mode=None):
        scored = real(syntax, trajs, rows, seq_len, max_calls, forced_mode=forced_mode)
        seen.append((forced_mode, list(trajs), list(rows)))
        correct = np.array([_passes(r["id"], t.sample_id) for t, r in zip(trajs, rows)],
                           np.float32)
        # A score that differs from correct shows the rewards are the verifier's scores.
        return dataclasses.replace(scored, correct_B=correct, score_B=0.2 + 0.6 * correct)

    label_mod.score_batch = controlled
    try:
        code = main_lib.run(_argv({**o, "mode": "label", "label.samples": K,
                                   "label.max_items": ITEMS, "label.prompts_per_batch": 4,
                                   "label.min_variance": 0.05}))
    finally:
        label_mod.score_batch = real
    assert code == 0
    cfg = config_lib.load(DEMO, tiny_overrides(str(run)))
    return run, o, cfg, seen


def test_labels_are_the_grades_of_k_forced_no_think_samples(labelled):
    run, _, cfg, seen = labelled
    tokenizer = load_tokenizer(run / "tokenizer")
    prefix = tokenizer.encode(forced_prefix("no_think"), add_special_tokens=False)
    assert prefix  # the empty think block: <think></think>
    rows = [r for _, _, batch in seen for r in batch]
    trajs = [t for _, batch, _ in seen for t in batch]
    assert {mode for mode, _, _ in seen} == {"short"}  # scored as the forced no-think mode
    assert len(rows) == K * ITEMS  # batches of 4, 4 and the last cut to 2
    for t in trajs:  # every prompt ends with the forced prefix; the completion follows it
        assert t.tokens[t.prompt_len - len(prefix): t.prompt_len].tolist() == prefix
    assert sorted(t.sample_id for t in trajs[:K]) == list(range(K))

    exp = Experiment.setup(cfg)
    try:
        train = TaskSource(exp.builder, "train")
        first = [train[i]["id"] for i in range(ITEMS)]
    finally:
        exp.close()
    labels = read_labels(str(run / "labels.jsonl"))
    assert list(labels) == first  # the train split's first items, in storage order
    for item_id, lab in labels.items():
        kind = _kind(item_id)
        assert lab.mode == ("long" if kind == 0 else "short")
        assert lab.passes == {0: 0, 1: 1, 2: K}[kind]
        expected = [0.2 + 0.6 * _passes(item_id, s) for s in range(K)]
        assert sorted(lab.rewards) == pytest.approx(sorted(expected))
    assert {_kind(i) for i in labels} == {0, 1, 2}  # every outcome occurs among the 10
    # The refinement written is refine() of the bare labels with the run's settings.
    bare = [dataclasses.replace(lab, drop_sft="", drop_rl="") for lab in labels.values()]
    assert list(labels.values()) == refine(bare, drop_fraction=0.5, min_variance=0.05, seed=0)
    assert {lab.drop_rl for lab in labels.values() if _kind(lab.id) != 1} == {"low_variance"}


def test_warm_up_and_rl_read_the_labels(labelled, tmp_path):
    run, o, _, _ = labelled
    path = str(run / "labels.jsonl")
    labels = read_labels(path)
    over = tiny_overrides(str(tmp_path / "sft"), mode="sft", **{
        "sft.steps": 1, "data.sft_max_len": 512, "data.sft_policy": "labels",
        "data.labels_path": path, "data.num_epochs": 1, "data.shuffle": False})
    cfg = config_lib.load(DEMO, over)
    exp = Experiment.setup(cfg)
    try:
        got = {}
        for batch in sft_loader(cfg.data, exp.builder, batch_size=1, seed=0,
                                tools=exp.tool_names, tokenizer=exp.tokenizer):
            got[batch[0]["id"]] = batch[0]["mode"]
        assert got == {i: lab.mode for i, lab in labels.items() if lab.keep("sft")}
        assert 0 < len(got) < ITEMS  # refinement dropped some extremes
        rl = [b[0]["id"] for b in prompt_loader(cfg.data, exp.builder, split="train",
                                                batch_size=1, seed=0, tools=exp.tool_names,
                                                tokenizer=exp.tokenizer)]
        assert rl == [i for i, lab in labels.items() if lab.keep("rl")]
    finally:
        exp.close()
    # And the CLI warm-up on them runs.
    assert main_lib.run(_argv({**over, "mode": "sft"})) == 0


def test_label_needs_a_policy_and_labels_need_their_file(tmp_path, capsys):
    o = tiny_overrides(str(tmp_path / "fresh"))
    assert main_lib.main(_argv({**o, "mode": "label"})) == 2
    assert "mode=label needs a policy to sample" in capsys.readouterr().err
    with pytest.raises(config_lib.ConfigError, match="sft_policy='labels' and .*labels_path"):
        config_lib.load(DEMO, {"data.sft_policy": "labels"})
    with pytest.raises(config_lib.ConfigError, match="label.samples=0"):
        config_lib.load(DEMO, {"label.samples": 0})
    assert ItemLabel(id="x", mode="long").keep("sft")


def test_label_records_appends_the_prefix_and_skips_prompts_that_no_longer_fit(monkeypatch):
    """Unit level, with a stand-in engine and verifier: which rows are sampled and graded."""
    from types import SimpleNamespace

    calls = {}

    class Engine:
        shapes = SimpleNamespace(prefill_len=6)

        def generate(self, params, prompts, k, prompt_ids, answer_calls):
            calls.update(prompts=prompts, k=k, answer_calls=answer_calls)
            return [SimpleNamespace(sample_id=s) for _ in prompts for s in range(k)]

    def grades(syntax, trajs, rows, seq_len, max_calls, forced_mode=None):
        assert forced_mode == "short" and len(trajs) == len(rows)
        correct = np.array([r["id"] == "b" and t.sample_id == 1 for t, r in zip(trajs, rows)],
                           np.float32)
        return SimpleNamespace(correct_B=correct, score_B=correct / 2)

    monkeypatch.setattr(label_mod, "score_batch", grades)
    records = [{"id": "a", "prompt_ids": [1, 2, 3]},
               {"id": "long", "prompt_ids": [1, 2, 3, 4, 5]},  # 5 + 2 prefix tokens > 6
               {"id": "b", "prompt_ids": [7], "functions": ["f"]}]
    labels = label_mod.label_records(Engine(), None, records, None, prefix_ids=[8, 9],
                                     samples=2, seq_len=16, max_calls=1)
    assert calls == {"prompts": [[1, 2, 3, 8, 9], [7, 8, 9]], "k": 2,
                     "answer_calls": [(), ["f"]]}
    assert [(lab.id, lab.mode, lab.passes, lab.rewards) for lab in labels] == [
        ("a", "long", 0, (0.0, 0.0)), ("long", "long", 0, ()), ("b", "short", 1, (0.0, 0.5))]
