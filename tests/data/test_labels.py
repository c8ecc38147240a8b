"""AutoTool warm-up labels and the offline refinement (data/labels.py): labels are a function of
the grades, the extremes' drop and the variance threshold keep exactly the sets the rules say,
deterministically by seed, and the labels file round-trips and fails loudly."""

import dataclasses
import hashlib
import json

import pytest

from toolrl_jax.data.labels import (
    LOW_VARIANCE,
    NOT_SAMPLED,
    TOO_EASY,
    TOO_HARD,
    ItemLabel,
    LabelledSource,
    extreme_drops,
    label_item,
    labels_jsonl,
    mode_of,
    read_labels,
    refine,
    summary,
    variance_drops,
)
from toolrl_jax.data.records import DataError


def _lab(i, passes, k=4, rewards=None):
    rewards = rewards if rewards is not None else [1.0] * passes + [0.0] * (k - passes)
    return ItemLabel(id=f"item-{i:02d}", mode=mode_of(passes), passes=passes,
                     rewards=tuple(rewards))


def _rank(seed, item_id):
    """The documented drop order, written independently of data/splits.stable_uniform."""
    digest = hashlib.sha256(f"refine\x1f{seed}\x1f{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def test_mode_is_short_iff_some_sample_passed():
    assert [mode_of(p) for p in (0, 1, 2, 8)] == ["long", "short", "short", "short"]
    record = {"id": "a", "task": "function_call", "difficulty": "hard",
              "metadata": {"category": "parallel"}}
    # Full credit counts as a pass; partial credit (QA token F1) does not.
    lab = label_item(record, rewards=[0.5, 1.0, 0.0], correct=[0.0, 1.0, 0.0])
    assert (lab.mode, lab.passes, lab.samples, lab.category) == ("short", 1, 3, "parallel")
    lab = label_item(record, rewards=[0.5, 0.8], correct=[0.0, 0.0])
    assert (lab.mode, lab.passes) == ("long", 0)
    with pytest.raises(ValueError, match="2 rewards but 1 verdicts"):
        label_item(record, rewards=[0.0, 1.0], correct=[1.0])


def test_extremes_drop_half_of_each_by_the_documented_hash():
    # 5 too easy (4/4), 3 too hard (0/4), 3 in between: floor(5/2) = 2 and floor(3/2) = 1 go.
    passes = [4, 4, 0, 2, 4, 0, 1, 4, 3, 0, 4]
    labels = [_lab(i, p) for i, p in enumerate(passes)]
    for seed in (0, 1, 7):
        drops = extreme_drops(labels, fraction=0.5, seed=seed)
        easy = sorted((lab.id for lab in labels if lab.passes == 4), key=lambda i: _rank(seed, i))
        hard = sorted((lab.id for lab in labels if lab.passes == 0), key=lambda i: _rank(seed, i))
        assert drops == {**{i: TOO_EASY for i in easy[:2]}, **{i: TOO_HARD for i in hard[:1]}}
    # Pinned once (seed 0), so a change of the rule cannot pass unnoticed.
    assert extreme_drops(labels, fraction=0.5, seed=0) == {
        "item-00": TOO_EASY, "item-07": TOO_EASY, "item-05": TOO_HARD}
    # Fractions 0 and 1, and a lone extreme (floor(1/2) = 0).
    assert extreme_drops(labels, fraction=0.0, seed=0) == {}
    assert len(extreme_drops(labels, fraction=1.0, seed=0)) == 8
    assert extreme_drops([_lab(0, 4), _lab(1, 2)], fraction=0.5, seed=0) == {}


def test_extremes_drop_is_deterministic_order_free_and_seeded():
    labels = [_lab(i, 4 if i % 2 else 0) for i in range(40)]
    a = extreme_drops(labels, fraction=0.5, seed=3)
    assert a == extreme_drops(list(reversed(labels)), fraction=0.5, seed=3)
    assert a == extreme_drops(labels, fraction=0.5, seed=3)
    assert a != extreme_drops(labels, fraction=0.5, seed=4)
    assert sum(r == TOO_EASY for r in a.values()) == sum(r == TOO_HARD for r in a.values()) == 10


def test_variance_threshold_keeps_exactly_the_items_at_or_above_it():
    rewards = {"a": [1, 0, 0, 0],  # p(1-p) = 0.1875
               "b": [1, 1, 0, 0],  # 0.25
               "c": [1, 1, 1, 1],  # 0
               "d": [0.5, 0.5],  # 0: partial credit that never varies
               "e": [0.25, 0.75]}  # 0.0625
    labels = [ItemLabel(id=k, mode="long", rewards=tuple(map(float, v))) for k, v in rewards.items()]
    assert [lab.variance for lab in labels] == [0.1875, 0.25, 0.0, 0.0, 0.0625]
    assert variance_drops(labels, 0.0) == set()
    assert variance_drops(labels, 0.0625) == {"c", "d"}
    assert variance_drops(labels, 0.1875) == {"c", "d", "e"}
    assert variance_drops(labels, 0.2) == {"a", "c", "d", "e"}
    with pytest.raises(ValueError, match="min_variance"):
        variance_drops(labels, -0.1)


def test_refine_sets_both_drops_and_keeps_unsampled_items_out():
    labels = [_lab(0, 4), _lab(1, 4), _lab(2, 0), _lab(3, 0), _lab(4, 1), _lab(5, 2),
              ItemLabel(id="too-long", mode="long")]
    out = refine(labels, drop_fraction=0.5, min_variance=0.2, seed=0)
    assert [lab.id for lab in out] == [lab.id for lab in labels]  # order kept
    by_id = {lab.id: lab for lab in out}
    assert by_id["too-long"].drop_sft == by_id["too-long"].drop_rl == NOT_SAMPLED
    assert sum(lab.drop_sft == TOO_EASY for lab in out) == 1
    assert sum(lab.drop_sft == TOO_HARD for lab in out) == 1
    # Variances: 0, 0, 0, 0, 0.1875, 0.25 -> only item 5 reaches 0.2.
    assert [lab.id for lab in out if lab.keep("rl")] == ["item-05"]
    assert {lab.drop_rl for lab in out if lab.id != "too-long" and lab.id != "item-05"} == {
        LOW_VARIANCE}
    s = summary(out)
    assert (s["items"], s["short"], s["long"], s["keep_sft"], s["keep_rl"]) == (7, 4, 3, 4, 1)
    with pytest.raises(ValueError, match="labelled twice"):
        refine([_lab(0, 1), _lab(0, 2)])


def test_labels_file_round_trips(tmp_path):
    labels = refine([_lab(0, 4), _lab(1, 0), _lab(2, 1, k=3)], seed=0)
    labels[0] = dataclasses.replace(labels[0], task="function_call", difficulty="easy",
                                    category="irrelevance")
    path = tmp_path / "labels.jsonl"
    path.write_text(labels_jsonl(labels))
    assert read_labels(str(path)) == {lab.id: lab for lab in labels}
    row = json.loads(path.read_text().splitlines()[2])
    assert (row["samples"], row["variance"]) == (3, pytest.approx(2 / 9))


@pytest.mark.parametrize("line, message", [
    ('{"mode": "short"}', "missing required key 'id'"),
    ('{"id": "a", "mode": "think"}', "'mode' must be 'short' or 'long'"),
    ('{"id": "a", "mode": "short", "passes": 3, "rewards": [1, 0]}', "'passes'=3"),
    ('{"id": "a", "mode": "long", "drop_sft": "bored"}', "'drop_sft'='bored'"),
    ('not json', "not a JSON line"),
])
def test_bad_labels_file_names_line_and_field(tmp_path, line, message):
    path = tmp_path / "labels.jsonl"
    path.write_text('{"id": "ok", "mode": "long"}\n' + line + "\n")
    with pytest.raises(DataError, match=message) as e:
        read_labels(str(path))
    assert f"{path}:2" in str(e.value)


def test_missing_duplicate_and_empty_labels_files(tmp_path):
    with pytest.raises(DataError, match="labels file not found"):
        read_labels(str(tmp_path / "nope.jsonl"))
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "mode": "long"}\n{"id": "a", "mode": "short"}\n')
    with pytest.raises(DataError, match="'a' is labelled twice"):
        read_labels(str(dup))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="holds no rows"):
        read_labels(str(empty))


def test_labelled_source_keeps_labelled_items_of_the_stage():
    records = [{"id": f"r{i}", "question": str(i)} for i in range(6)]
    labels = {"r0": ItemLabel(id="r0", mode="short"),
              "r2": ItemLabel(id="r2", mode="long", drop_sft=TOO_HARD),
              "r3": ItemLabel(id="r3", mode="long", drop_rl=LOW_VARIANCE),
              "r5": ItemLabel(id="r5", mode="short"), "zz": ItemLabel(id="zz", mode="long")}
    sft = LabelledSource(records, labels, "sft")
    rl = LabelledSource(records, labels, "rl")
    assert [sft[i]["id"] for i in range(len(sft))] == ["r0", "r3", "r5"]
    assert [rl[i]["id"] for i in range(len(rl))] == ["r0", "r2", "r5"]
    assert repr(sft) != repr(rl)
    with pytest.raises(DataError, match="no record .* is labelled and kept for sft"):
        LabelledSource(records, {"zz": labels["zz"]}, "sft")
