import json

import pytest

from toolrl_jax.data import gsm8k
from toolrl_jax.data.records import DataError, read_task_jsonl


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_task_jsonl(tmp_path):
    path = write(tmp_path / "tasks.jsonl", [
        json.dumps({"question": "2+2?", "answer": 4}),
        "",
        json.dumps({"id": "q2", "question": "Capital of France?", "answer": "Paris",
                    "difficulty": "easy", "source": "atlas", "metadata": {"k": 1},
                    "trajectory": "<search>France</search><result>\nParis\n</result>"
                                  "<answer>Paris</answer>"}),
        json.dumps({"question": "half?", "answer": 0.5}),
    ])
    records = read_task_jsonl(path).records
    assert [r["id"] for r in records] == ["tasks-1", "q2", "tasks-4"]
    assert records[0]["answer"] == "4" and records[2]["answer"] == "0.5"
    assert records[0]["task"] == "jsonl" and records[0]["trajectory"] == ""
    assert records[1]["metadata"] == {"k": 1, "source": "atlas"}  # extra keys kept


@pytest.mark.parametrize(
    "line, reason",
    [
        ('{"question": "q"}', "missing required key 'answer'"),
        ('{"question": "q", "answer": true}', "'answer' must be a string or a number"),
        ('{"question": "", "answer": "a"}', "'question' is empty"),
        ('{"question": 3, "answer": "a"}', "'question' must be a string"),
        ('{"question": "q", "answer": "a", "difficulty": "medium"}', "'difficulty'"),
        ('{"question": "q", "answer": "a", "trajectory": "<result>x"}', "never closed"),
        ('{"question": "q", "answer": "a", "trajectory": "thinking"}', "no <answer>"),
        ('{"question": "q", "answer": "a", "metadata": [1]}', "'metadata' must be an object"),
        ('[1, 2]', "must be a JSON object"),
        ('{"question": "q", ', "Expecting"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, line, reason):
    path = write(tmp_path / "bad.jsonl", ['{"question": "ok", "answer": "1"}', line])
    with pytest.raises(DataError, match=rf"bad\.jsonl:2: .*{reason}"):
        read_task_jsonl(path)
    skipped = read_task_jsonl(path, on_bad_row="skip")
    assert len(skipped.records) == 1 and len(skipped.skipped) == 1
    assert skipped.skipped[0].startswith(f"{path}:2: ")


def test_duplicate_ids_and_missing_file(tmp_path):
    path = write(tmp_path / "dup.jsonl", ['{"id": "a", "question": "q", "answer": "1"}',
                                          '{"id": "a", "question": "r", "answer": "2"}'])
    with pytest.raises(DataError, match="dup.jsonl:2: duplicate id 'a' \\(first on line 1\\)"):
        read_task_jsonl(path)
    with pytest.raises(DataError, match="task file not found"):
        read_task_jsonl(tmp_path / "nope.jsonl")


def test_gsm8k_first_row_golden():
    row = json.loads(gsm8k.SHIPPED_SUBSET.read_text().splitlines()[0])
    record = gsm8k.row_to_record(row, index=1)
    assert record["answer"] == "18" and record["task"] == "gsm8k"
    assert record["difficulty"] == "easy"  # two calculator steps
    assert record["trajectory"] == (
        "Janet sells 16 - 3 - 4 = <calculator>16-3-4</calculator>\n<result>\n9\n</result>\n"
        "9 duck eggs a day.\n"
        "She makes 9 * 2 = $<calculator>9*2</calculator>\n<result>\n18\n</result>\n"
        "18 every day at the farmer’s market.\n<answer>18</answer>"
    )
    assert record["metadata"]["calls"] == 2 and record["metadata"]["mismatched"] == 0


def test_gsm8k_results_are_recomputed_not_copied():
    solution = "Cost 80,000*1.5=<<80000*1.5=120001>>120,001\nOdd <<ten=10>>10\n#### 1,200"
    trajectory, stats = gsm8k.solution_to_trajectory(solution)
    assert "<calculator>80000*1.5</calculator>\n<result>\n120000\n</result>\n" in trajectory
    assert "Odd ten=1010" in trajectory  # unevaluable annotation kept as text, no call
    assert trajectory.endswith("<answer>1200</answer>")
    assert stats == {"calls": 1, "mismatched": 1, "uncalled": 1}


def test_gsm8k_bad_rows():
    with pytest.raises(ValueError, match="no final '#### <answer>' line"):
        gsm8k.row_to_record({"question": "q", "answer": "no final line"}, index=1)
    with pytest.raises(ValueError, match="non-string 'answer'"):
        gsm8k.row_to_record({"question": "q"}, index=1)


def test_shipped_subset_and_license():
    assert len(gsm8k.SHIPPED_SUBSET.read_text().splitlines()) == 200
    assert "Copyright (c) 2021 OpenAI" in (gsm8k.ASSET_DIR / "LICENSE").read_text()
