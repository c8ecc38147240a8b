import dataclasses
import itertools
import json
import os

import pytest

from toolrl_jax.config.data import DataConfig
from toolrl_jax.data import pipeline, prepare, splits, synthetic
from toolrl_jax.data.builders import Gsm8kTasks, JsonlTasks, TaskSource, prepare_builder
from toolrl_jax.data.records import DataError
from toolrl_jax.data.trajectories import template_renderer

from .conftest import TOOLS


@pytest.fixture(scope="module")
def synth(tmp_path_factory, small_cfg):
    return prepare_builder(small_cfg, tmp_path_factory.mktemp("tfds"))


def ids(batches):
    return [[e["id"] for e in batch] for batch in batches]


def test_synthetic_builder_round_trips_records(synth, small_cfg):
    assert synth.info.splits["train"].num_examples == small_cfg.num_train
    assert synth.info.splits["heldout"].num_examples == small_cfg.num_heldout
    stored = sorted(TaskSource(synth, "heldout").records(), key=lambda r: r["id"])
    expected = sorted(synthetic.synthetic_split(small_cfg, "heldout"), key=lambda r: r["id"])
    assert stored == expected
    assert synth.data_path.name == "1.0.0"
    assert synth.builder_config.name.startswith("h")


def test_build_stays_in_the_given_dir(tmp_path, small_cfg):
    home_tfds = os.path.expanduser("~/tensorflow_datasets")
    before = os.path.exists(home_tfds) and sorted(os.listdir(home_tfds))
    builder = prepare_builder(small_cfg, tmp_path)
    assert str(builder.data_path).startswith(str(tmp_path))
    assert (os.path.exists(home_tfds) and sorted(os.listdir(home_tfds))) == before
    with pytest.raises(ValueError, match="data_dir is required"):
        JsonlTasks(cfg=small_cfg, data_dir="")


def test_config_change_builds_a_new_dataset(tmp_path, small_cfg):
    a = prepare_builder(small_cfg, tmp_path)
    b = prepare_builder(dataclasses.replace(small_cfg, seed=1), tmp_path)
    assert a.builder_config.name != b.builder_config.name
    # Knobs that do not shape the data (loader settings) keep the same dataset.
    c = prepare_builder(dataclasses.replace(small_cfg, shuffle=False, sft_p_long=0.9), tmp_path)
    assert c.builder_config.name == a.builder_config.name


def test_gsm8k_builder(tmp_path):
    builder = prepare_builder(DataConfig(source="gsm8k"), tmp_path)
    train, held = TaskSource(builder, "train"), TaskSource(builder, "heldout")
    assert len(train) + len(held) == 200 and 20 < len(held) < 60
    assert not {r["question"] for r in train.records()} & {r["question"] for r in held.records()}
    record = train[0]
    assert record["task"] == "gsm8k" and "<calculator>" in record["trajectory"]
    assert "grade-school-math" in builder.info.homepage


def test_jsonl_builder_bad_rows(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [json.dumps({"question": f"q{i}?", "answer": str(i)}) for i in range(30)]
    path.write_text("\n".join(rows[:5] + ['{"question": "broken"}'] + rows[5:]) + "\n")
    cfg = DataConfig(source="jsonl", jsonl_path=str(path))
    with pytest.raises(DataError, match=r"mine\.jsonl:6: missing required key 'answer'"):
        prepare_builder(cfg, tmp_path / "tfds")
    builder = prepare_builder(dataclasses.replace(cfg, on_bad_row="skip"), tmp_path / "tfds")
    assert builder.info.metadata["skipped_rows"] == 1
    assert builder.info.metadata["skipped"][0].endswith("mine.jsonl:6: missing required key "
                                                        "'answer'")
    total = sum(builder.info.splits[s].num_examples for s in ("train", "heldout"))
    assert total == 30
    # A changed file is a new dataset, never a stale reuse.
    path.write_text("\n".join(rows) + "\n")
    rebuilt = prepare_builder(dataclasses.replace(cfg, on_bad_row="skip"), tmp_path / "tfds")
    assert rebuilt.builder_config.name != builder.builder_config.name
    assert rebuilt.info.metadata["skipped_rows"] == 0


def test_missing_input_files(tmp_path):
    with pytest.raises(DataError, match="task file not found"):
        prepare_builder(DataConfig(source="jsonl", jsonl_path=str(tmp_path / "x.jsonl")), tmp_path)
    with pytest.raises(DataError, match="GSM8K file not found"):
        Gsm8kTasks(cfg=DataConfig(source="gsm8k", gsm8k_path=str(tmp_path / "g")), data_dir=tmp_path)


def test_loader_resumes_from_saved_state(synth, small_cfg):
    loader = pipeline.prompt_loader(small_cfg, synth, split="train", batch_size=8, seed=3,
                                    tools=TOOLS)
    it = iter(loader)
    for _ in range(4):
        next(it)
    state = it.get_state()
    expected = ids(next(it) for _ in range(20))  # crosses the epoch boundary (120 records)
    resumed = iter(pipeline.prompt_loader(small_cfg, synth, split="train", batch_size=8, seed=3,
                                          tools=TOOLS))
    resumed.set_state(state)
    assert ids(next(resumed) for _ in range(20)) == expected
    # A different seed is a different order.
    other = iter(pipeline.prompt_loader(small_cfg, synth, split="train", batch_size=8, seed=4,
                                        tools=TOOLS))
    assert ids(next(other) for _ in range(5)) != ids(next(iter(loader)) for _ in range(5))


def test_state_of_another_dataset_is_refused(synth, small_cfg, tmp_path):
    it = iter(pipeline.prompt_loader(small_cfg, synth, split="train", batch_size=8, seed=0,
                                     tools=TOOLS))
    next(it)
    other = prepare_builder(dataclasses.replace(small_cfg, seed=5), tmp_path)
    foreign = iter(pipeline.prompt_loader(small_cfg, other, split="train", batch_size=8, seed=0,
                                          tools=TOOLS))
    with pytest.raises(ValueError, match="DataSource in checkpoint does not match"):
        foreign.set_state(it.get_state())


def test_heldout_loader_is_one_ordered_pass(synth, small_cfg, tokenizer):
    loader = pipeline.prompt_loader(small_cfg, synth, split="heldout", batch_size=16, seed=0,
                                    tools=TOOLS, tokenizer=tokenizer)
    batches = list(loader)
    assert [len(b) for b in batches] == [16, 16, 8]
    seen = [e["id"] for b in batches for e in b]
    assert sorted(seen) == sorted(r["id"] for r in TaskSource(synth, "heldout").records())
    first = batches[0][0]
    assert first["messages"][1]["content"] == first["question"]
    assert tokenizer.decode(first["prompt_ids"]).endswith(
        f"{first['question']}<|im_end|>\n<|im_start|>assistant\n")
    assert ids(loader) == ids(batches)  # same order every pass


def test_shards_are_disjoint(synth, small_cfg):
    def shard(i):
        loader = pipeline.prompt_loader(small_cfg, synth, split="heldout", batch_size=4, seed=0,
                                        tools=TOOLS, shard_index=i, shard_count=2)
        return {e["id"] for b in loader for e in b}
    a, b = shard(0), shard(1)
    assert len(a) == len(b) == small_cfg.num_heldout // 2 and not a & b
    with pytest.raises(ValueError, match="shard_index=2"):
        pipeline.make_loader([1, 2], batch_size=1, seed=0, shuffle=False, num_epochs=1,
                             shard_index=2, shard_count=2)


def test_sft_loader(synth, small_cfg, tokenizer):
    loader = pipeline.sft_loader(small_cfg, synth, batch_size=6, seed=0, tools=TOOLS,
                                 tokenizer=tokenizer)
    batch = next(iter(loader))
    assert len(batch) == 6
    for e in batch:
        assert set(e) >= {"tokens", "loss_mask", "prompt_len", "mode", "is_short", "task"}
        assert len(e["tokens"]) <= small_cfg.sft_max_len
        assert e["loss_mask"][e["prompt_len"]:].sum() > 0
    # Examples over the length limit are dropped, not truncated: long ones go, short ones stay.
    lengths = {e["mode"]: len(e["tokens"]) for e in batch}
    limit = (lengths["short"] + lengths["long"]) // 2 if len(lengths) == 2 else 0
    assert limit, "the first batch should hold both modes"
    tight = dataclasses.replace(small_cfg, sft_max_len=limit)
    it = iter(pipeline.sft_loader(tight, synth, batch_size=4, seed=0, tools=TOOLS,
                                  tokenizer=tokenizer))
    kept = [e for _ in range(5) for e in next(it)]  # the train loader repeats forever
    assert all(len(e["tokens"]) <= limit for e in kept)
    # A result renderer (here: another wrapper) reaches every long example.
    marked = dataclasses.replace(small_cfg, sft_policy="always_long")
    it = iter(pipeline.sft_loader(marked, synth, batch_size=4, seed=0, tools=TOOLS,
                                  tokenizer=tokenizer,
                                  render_result=template_renderer("<result>[{result}]</result>")))
    for e in next(it):
        text = tokenizer.decode(e["tokens"][e["segment_kinds"] == 2])
        assert text.startswith("<result>[") and "\n<result>" not in text
    # A limit nothing fits under is an error, not an endless search for a batch.
    impossible = dataclasses.replace(small_cfg, sft_max_len=5)
    it = iter(pipeline.sft_loader(impossible, synth, batch_size=4, seed=0, tools=TOOLS,
                                  tokenizer=tokenizer))
    with pytest.raises(ValueError, match="longer than data.sft_max_len=5"):
        next(it)


def test_sft_mode_tag_tags_targets_and_prompts_alike(synth, small_cfg, tokenizer):
    """``sft.mode_tag``: every warm-up target opens with its mode tag (empty block = short), and
    the SFT prompt is exactly the prompt RL and evaluation then ask with."""
    from toolrl_jax.config.schema import SFTConfig
    from toolrl_jax.data.modes import NO_THINK_TAG, detect_mode
    from toolrl_jax.data.prompts import MODE_TAG_INSTRUCTION

    mode_tag = SFTConfig(mode_tag=True).mode_tag
    batch = next(iter(pipeline.sft_loader(small_cfg, synth, batch_size=8, seed=0, tools=TOOLS,
                                          tokenizer=tokenizer, mode_tag=mode_tag)))
    assert {e["mode"] for e in batch} == {"short", "long"}
    # RL and evaluation prompts: prompt_loader's transform over the same records.
    ask = pipeline.AddPrompt(TOOLS, tokenizer, mode_tag=mode_tag)
    prompts = {r["id"]: ask.map(r) for r in TaskSource(synth, "train").records()}
    for e in batch:
        target = tokenizer.decode(e["tokens"][e["prompt_len"]:])
        assert target.startswith(NO_THINK_TAG if e["mode"] == "short" else "<think>")
        assert detect_mode(target) == e["mode"]
        assert e["tokens"][:e["prompt_len"]].tolist() == prompts[e["id"]]["prompt_ids"].tolist()
        assert MODE_TAG_INSTRUCTION in prompts[e["id"]]["messages"][0]["content"]
    # Off (the default): no tag, and prompts without the instruction.
    plain = next(iter(pipeline.sft_loader(small_cfg, synth, batch_size=8, seed=0, tools=TOOLS,
                                          tokenizer=tokenizer)))
    for e in plain:
        assert "<think></think>" not in tokenizer.decode(e["tokens"])
        assert MODE_TAG_INSTRUCTION not in tokenizer.decode(e["tokens"][:e["prompt_len"]])


def test_prepare_run(tmp_path, small_cfg):
    builder = prepare.prepare_dataset(small_cfg, tmp_path)
    assert str(builder.data_path).startswith(str(tmp_path / "tfds"))
    cfg = dataclasses.replace(small_cfg, demo_vocab_size=400)
    tok = prepare.prepare_tokenizer(cfg, tmp_path, builder, TOOLS)
    assert len(tok) == 400 and (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    mtime = (tmp_path / "tokenizer" / "tokenizer.json").stat().st_mtime_ns
    prepare.prepare_tokenizer(cfg, tmp_path, builder, TOOLS)  # reused, not retrained
    assert (tmp_path / "tokenizer" / "tokenizer.json").stat().st_mtime_ns == mtime
    corpus = prepare.prepare_corpus(cfg, tmp_path)
    assert corpus == tmp_path / "corpus.jsonl" and corpus.is_file()
    assert prepare.prepare_corpus(dataclasses.replace(cfg, tasks=("arithmetic",)), tmp_path
                                  / "x") is None


def test_rl_only_share_keeps_rl_prompts_out_of_the_warm_up(synth, small_cfg, tokenizer):
    # rl_only_fraction=0.3: the RL loader reads exactly the items the SFT loader never shows,
    # together they cover the train split, and the share is ~0.3 (a hash, not a count).
    cfg = dataclasses.replace(small_cfg, rl_only_fraction=0.3)
    n = small_cfg.num_train
    rl_ids = {e["id"] for b in itertools.islice(iter(pipeline.prompt_loader(
        cfg, synth, split="train", batch_size=4, seed=0, tools=TOOLS)), 3 * n // 4) for e in b}
    sft_ids = {e["id"] for b in itertools.islice(iter(pipeline.sft_loader(
        cfg, synth, batch_size=4, seed=0, tools=TOOLS, tokenizer=tokenizer,
        )), 3 * n // 4) for e in b}
    records = list(TaskSource(synth, "train").records())
    every = {r["id"] for r in records}
    assert not rl_ids & sft_ids
    assert rl_ids == {r["id"] for r in records
                      if splits.rl_only(splits.stage_key(r), cfg.split_seed, 0.3)}
    # No question, and no hard lookup item's person, is on both sides: a repeat or a sibling
    # template in the warm-up would hand RL a memorised answer.
    by_id = {r["id"]: r for r in records}
    rl_keys = {splits.stage_key(by_id[i]) for i in rl_ids}
    sft_keys = {splits.stage_key(by_id[i]) for i in sft_ids}
    assert not rl_keys & sft_keys
    assert not {by_id[i]["question"] for i in rl_ids} & {by_id[i]["question"] for i in sft_ids}
    hard = [by_id[i] for i in rl_ids | sft_ids
            if by_id[i]["metadata"].get("kind") == "country_of_person"]
    assert hard and all(r["metadata"]["subject"] in r["question"] for r in hard)
    assert 0.15 * n < len(rl_ids) < 0.45 * n
    assert len(sft_ids) > 0.4 * n  # (examples over sft_max_len are dropped by the loader)
    # 0 (the default): RL reads the whole split (3 epochs' worth of batches here).
    assert {e["id"] for b in itertools.islice(iter(pipeline.prompt_loader(
        small_cfg, synth, split="train", batch_size=4, seed=0, tools=TOOLS)), 3 * n // 4)
        for e in b} == every
    subset = pipeline.StageSubset(TaskSource(synth, "train"), "rl", 0.3, 0)
    assert len(subset) == len(rl_ids) and "rl_only_fraction=0.3" in repr(subset)
    with pytest.raises(ValueError, match="unknown stage 'eval'"):
        pipeline.StageSubset(TaskSource(synth, "train"), "eval", 0.3, 0)
    with pytest.raises(ValueError, match="leaves no train record"):
        pipeline.StageSubset([{"id": "a", "question": "q"}], "rl", 1e-9, 0)
    with pytest.raises(ValueError, match="rl_only_fraction=1.0 must be in"):
        DataConfig(rl_only_fraction=1.0).validate("data")
