import collections
import math
import re

import pytest

from toolrl_jax.config.data import DataConfig
from toolrl_jax.data import arithmetic, lookup, synthetic
from toolrl_jax.data.expressions import calculate
from toolrl_jax.data.records import check_record
from toolrl_jax.data.splits import cycle_sample, split_of, stable_uniform
from toolrl_jax.data.trajectories import join_segments, split_segments
from toolrl_jax.verifiers import grade

CFG = DataConfig(num_train=400, num_heldout=100, num_rare=80)


@pytest.fixture(scope="module")
def splits():
    return synthetic.synthetic_splits(CFG)


def test_stable_uniform_matches_sha256_reference():
    # An independent computation: first 8 bytes of sha256 over the 0x1f-joined key.
    import hashlib

    digest = hashlib.sha256(b"split\x1f0\x1fWhat is 7+5?").digest()
    assert stable_uniform("split", 0, "What is 7+5?") == int.from_bytes(digest[:8], "big") / 2**64
    assert stable_uniform("split", 0, "What is 7+5?") == pytest.approx(0.6214053, abs=1e-7)
    assert split_of("What is 7+5?", 0, 0.2) == "train"
    assert split_of("What is 7+5?", 0, 0.7) == "heldout"


def test_stage_key_is_the_subject_else_the_question():
    from toolrl_jax.data.splits import stage_key

    assert stage_key({"id": "1", "question": "Where?", "metadata": {"subject": "Bafo Kemit"}}) \
        == "Bafo Kemit"
    assert stage_key({"id": "1", "question": "Where?", "metadata": {}}) == "Where?"
    assert stage_key({"id": "2", "question": "Where?"}) == "Where?"  # the id never decides


def test_cycle_sample_covers_pool_before_repeating():
    import random

    draws = cycle_sample(random.Random(0), list(range(5)), 12)
    assert sorted(draws[:5]) == list(range(5)) and sorted(draws[5:10]) == list(range(5))
    with pytest.raises(ValueError, match="empty pool"):
        cycle_sample(random.Random(0), [], 1)


def test_golden_items(splits):
    # Pins the generators: a change here changes every dataset built from them (bump the
    # builders' VERSION when it is intended).
    def view(r):
        return r["id"], r["question"], r["answer"], r["difficulty"]

    assert [view(r) for r in splits["train"][:2]] == [
        ("arithmetic-train-00000", "What is 470*64?", "30080", "hard"),
        ("arithmetic-train-00001", "What is 9+7?", "16", "easy"),
    ]
    assert view(splits["train"][200]) == (
        "lookup-train-00000", "Which country is Fosop in?", "Fepopland", "easy")
    assert view(splits["heldout"][0]) == (
        "arithmetic-heldout-00000", "What is 8889+9438+4410+7212+9689?", "39638", "hard")


def test_records_are_valid_and_answers_right(splits):
    for split, records in splits.items():
        assert len(records) == (CFG.num_train if split == "train" else CFG.num_heldout)
        assert len({r["id"] for r in records}) == len(records)
        for r in records:
            check_record(r)
            assert r["difficulty"] in ("easy", "hard")
            # The long trajectory ends in the right answer and is stored in canonical form.
            verdict = grade(r["trajectory"], r)
            assert verdict.correct and verdict.score == 1.0, (r, verdict)
            assert join_segments(split_segments(r["trajectory"])) == r["trajectory"]
            if r["task"] == "arithmetic":
                assert r["answer"] == str(eval(r["metadata"]["expression"]))  # noqa: S307


def test_difficulty_mix(splits):
    counts = collections.Counter((r["task"], r["difficulty"]) for r in splits["train"])
    assert counts == {("arithmetic", "easy"): 100, ("arithmetic", "hard"): 100,
                      ("lookup", "easy"): 100, ("lookup", "hard"): 100}


def test_easy_arithmetic_is_single_digit_and_hard_is_not(splits):
    for r in splits["train"]:
        if r["task"] != "arithmetic":
            continue
        numbers = re.findall(r"\d+", r["metadata"]["expression"])
        if r["difficulty"] == "easy":
            assert len(numbers) == 2 and all(len(n) == 1 for n in numbers)
        else:
            assert len(numbers) >= 4 or max(len(n) for n in numbers) >= 2
            assert len(r["answer"]) >= 3


def test_heldout_never_in_train(splits):
    train_q = {r["question"] for r in splits["train"]}
    held_q = {r["question"] for r in splits["heldout"]}
    assert not train_q & held_q
    # Held-out rare people are never the subject of a train question.
    def people(records):
        return {r["metadata"]["hops"][0][0] for r in records
                if r["task"] == "lookup" and r["difficulty"] == "hard"}
    assert people(splits["heldout"]) and not people(splits["train"]) & people(splits["heldout"])


def test_split_is_independent_of_sampling_seed():
    other = DataConfig(num_train=400, num_heldout=100, num_rare=80, seed=7)
    train = {r["question"] for r in synthetic.synthetic_split(other, "train")}
    held = {r["question"] for r in synthetic.synthetic_split(CFG, "heldout")}
    assert not train & held


def test_generation_is_deterministic():
    a = synthetic.synthetic_split(CFG, "heldout")
    assert a == synthetic.synthetic_split(CFG, "heldout")
    assert a != synthetic.synthetic_split(DataConfig(num_heldout=100, num_rare=80, seed=3),
                                          "heldout")


def test_arithmetic_trajectory_holds_real_tool_output():
    text = arithmetic.trajectory_for("437*86", "calculator")
    assert text == ("<think>Use the calculator for 437*86.</think>\n"
                    "<calculator>437*86</calculator>\n<result>\n37582\n</result>\n"
                    "<answer>37582</answer>")
    py = arithmetic.trajectory_for("12+30+7+1", "python")
    assert "<python>print(12+30+7+1)</python>\n<result>\n50\n</result>\n" in py


def test_easy_arithmetic_pool():
    pool = arithmetic.easy_pool()
    assert len(pool) == 255 and len(set(pool)) == 255
    assert all(int(calculate(e)) >= 0 for e, _ in pool)


def test_lookup_facts_match_corpus(splits):
    world = synthetic.world_from_config(CFG)
    passages = {p["id"]: p for p in world.passages()}
    assert len(passages) == CFG.num_famous + CFG.num_rare + CFG.num_cities
    assert set(world.city_country.values()) == set(world.countries)  # every country has a city
    for r in splits["train"] + splits["heldout"]:
        if r["task"] != "lookup":
            continue
        hops = r["metadata"]["hops"]
        assert len(hops) == (2 if r["difficulty"] == "hard" else 1)
        # Each search result in the trajectory is the gold passage of that hop.
        results = re.findall(r"<result>\n(.*?)\n</result>", r["trajectory"])
        assert results == [passages[pid]["text"] for _, pid in hops]
        assert r["answer"] in passages[hops[-1][1]]["text"]


def test_famous_facts_are_frequent_rare_ones_are_not(splits):
    def subjects(difficulty):
        return collections.Counter(r["metadata"]["hops"][0][0] for r in splits["train"]
                                   if r["task"] == "lookup" and r["difficulty"] == difficulty)

    assert min(subjects("easy").values()) >= 2  # every easy fact is seen several times
    assert max(subjects("hard").values()) <= 2  # a rare person: at most once per template


def _bm25_rank(passages, query, k1=1.5, b=0.75):
    """An independent BM25 over title + text, as a search tool would index the corpus."""
    def tokens(text):
        return re.findall(r"\w+", text.lower())
    docs = [tokens(p["title"] + " " + p["text"]) for p in passages]
    avgdl = sum(map(len, docs)) / len(docs)
    df = collections.Counter(t for d in docs for t in set(d))
    n = len(docs)
    scores = []
    for d in docs:
        tf = collections.Counter(d)
        s = 0.0
        for t in tokens(query):
            if t in tf:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * len(d) / avgdl))
        scores.append(s)
    return sorted(range(n), key=lambda i: -scores[i])


def test_bm25_ranks_the_gold_passage_first(splits):
    world = synthetic.world_from_config(CFG)
    passages = world.passages()
    index = {p["id"]: i for i, p in enumerate(passages)}
    hops = {tuple(h) for r in splits["train"] + splits["heldout"] if r["task"] == "lookup"
            for h in r["metadata"]["hops"]}
    assert len(hops) > 50
    for query, pid in hops:
        assert _bm25_rank(passages, query)[0] == index[pid], query


def test_world_is_deterministic_and_names_unique():
    w1 = lookup.make_world(0, num_countries=3, num_cities=5, num_famous=2, num_rare=20)
    w2 = lookup.make_world(0, num_countries=3, num_cities=5, num_famous=2, num_rare=20)
    assert w1 == w2
    words = [*w1.countries, *w1.cities] + [w for p in w1.famous + w1.rare for w in p.split()]
    assert len(words) == len(set(words))
    with pytest.raises(ValueError, match="num_cities"):
        lookup.make_world(0, num_countries=3, num_cities=2, num_famous=1, num_rare=1)


def test_empty_split_pool_is_a_clear_error():
    # One rare person lands in exactly one split; hard items of the other split have no pool.
    tiny = DataConfig(tasks=("lookup",), num_famous=1, num_cities=1, num_countries=1, num_rare=1,
                      num_train=10, num_heldout=10, hard_fraction=1.0)
    person_split = split_of(synthetic.world_from_config(tiny).rare[0], 0, 0.2)
    empty = "heldout" if person_split == "train" else "train"
    assert len(synthetic.synthetic_split(tiny, person_split)) == 10
    with pytest.raises(ValueError, match=f"no hard lookup item falls in split '{empty}'"):
        synthetic.synthetic_split(tiny, empty)


def test_write_corpus(tmp_path):
    path = synthetic.write_corpus(CFG, tmp_path / "c" / "corpus.jsonl")
    import json

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == synthetic.world_from_config(CFG).passages()
    assert set(rows[0]) == {"id", "title", "text"}
