"""Function-calling records: BFCL loader errors, JSONL rows with tools, the synthetic generator."""

import json

import pytest

from toolrl_jax.data import function_calling as fc
from toolrl_jax.data.records import DataError, read_task_jsonl
from toolrl_jax.verifiers import check_calls, grade


def test_synthetic_gold_is_correct_and_kinds_are_mixed():
    recs = fc.generate("train", 60, seed=0, hard_fraction=0.5, split_seed=0, heldout_fraction=0.2)
    assert len(recs) == 60 and {r["difficulty"] for r in recs} == {"easy", "hard"}
    cats = {r["metadata"]["category"] for r in recs}
    assert cats == {"easy", "hard", "irrelevance"}
    assert any(len(json.loads(r["answer"])) == 2 for r in recs)  # parallel calls
    for r in recs:
        assert grade(fc.hermes_completion(r), r).correct, r["id"]
    held = fc.generate("heldout", 20, seed=1, hard_fraction=0.5, split_seed=0, heldout_fraction=0.2)
    assert not {r["question"] for r in recs} & {r["question"] for r in held}


def test_synthetic_unit_conversion_is_checked():
    recs = fc.generate("train", 200, seed=0, hard_fraction=1.0, split_seed=0, heldout_fraction=0.2)
    r = next(r for r in recs if "minutes" in r["question"])
    minutes = int(r["question"].split()[-2])
    assert check_calls([{"set_timer": {"seconds": 60 * minutes}}], json.loads(r["answer"]),
                       r["metadata"]["tools"]).correct
    assert not check_calls([{"set_timer": {"seconds": minutes}}], json.loads(r["answer"]),
                           r["metadata"]["tools"]).correct


def test_jsonl_row_with_tools(tmp_path):
    spec = {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}},
                                        "required": ["x"]}}
    rows = [{"id": "a", "question": "x is 2", "tools": [spec], "answer": [{"f": {"x": [2]}}]},
            {"id": "b", "messages": [{"role": "user", "content": "q"}], "tools": [spec],
             "answer": [{"g": {"x": [2]}}]}]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"t.jsonl:2: 'answer\[0\]' calls 'g', which is not in"):
        read_task_jsonl(path)
    res = read_task_jsonl(path, on_bad_row="skip")
    assert [r["id"] for r in res.records] == ["a"] and res.records[0]["task"] == "function_call"


def test_bfcl_bad_rows_name_line_and_field(tmp_path):
    (tmp_path / "possible_answer").mkdir()
    q = {"id": "simple_0", "question": [[{"role": "user", "content": "hi"}]],
         "function": [{"name": "f", "parameters": {"type": "dict", "properties": {},
                                                    "required": []}}]}
    (tmp_path / "BFCL_v4_simple.json").write_text(json.dumps(q) + "\n" + json.dumps(
        {**q, "id": "simple_1", "function": [{"name": "f", "parameters": []}]}) + "\n")
    (tmp_path / "possible_answer" / "BFCL_v4_simple.json").write_text(
        json.dumps({"id": "simple_0", "ground_truth": [{"f": {}}]}) + "\n" +
        json.dumps({"id": "simple_1", "ground_truth": [{"f": {}}]}) + "\n")
    with pytest.raises(DataError, match=r"BFCL_v4_simple.json:2: 'tools\[0\].parameters' must"):
        fc.read_bfcl(tmp_path / "BFCL_v4_simple.json")
