"""BM25: hand-derived scores, top-1 on a small corpus, the search tool's output and errors."""

import json
import math

import pytest

from toolrl_jax.tools import BM25Index, SearchTool, load_corpus
from toolrl_jax.tools.bm25 import tokenize
from toolrl_jax.types import ToolStatus

CORPUS = [
    {"id": "p1", "title": "Paris", "text": "Paris is the capital and largest city of France."},
    {"id": "p2", "title": "Berlin", "text": "Berlin is the capital of Germany, on the Spree."},
    {"id": "p3", "title": "Python", "text": "Python is a programming language by Guido van Rossum."},
    {"id": "p4", "title": "Everest", "text": "Mount Everest is the highest mountain on Earth."},
    {"id": "p5", "title": "Nile", "text": "The Nile is a major river flowing north through Africa."},
]


def test_bm25_matches_hand_derived_scores():
    # docs: "cat sat", "dog barked", "cat cat dog"; N=3, lengths 2,2,3, avgdl=7/3.
    k1, b = 1.5, 0.75
    index = BM25Index(["cat sat", "dog barked", "cat cat dog"], k1=k1, b=b)
    idf_cat = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    idf_dog = idf_cat  # also in 2 of 3 documents
    avgdl = 7 / 3

    def tf_part(tf, dl):
        return tf / (tf + k1 * (1 - b + b * dl / avgdl))

    expected = [
        idf_cat * tf_part(1, 2),
        idf_dog * tf_part(1, 2),
        idf_cat * tf_part(2, 3) + idf_dog * tf_part(1, 3),
    ]
    assert index.scores("cat dog") == pytest.approx(expected, rel=1e-12)
    assert index.scores("cat cat dog") == pytest.approx(expected, rel=1e-12)  # distinct terms
    assert [i for i, _ in index.search("cat dog", k=3)] == [2, 0, 1]  # tie 0/1 -> earlier first
    assert index.search("unicorn", k=3) == []


def test_tokenizer_lowercases_and_drops_stopwords():
    assert tokenize("The Capital of FRANCE, is... Paris!") == ["capital", "france", "paris"]


@pytest.mark.parametrize(
    "query, top",
    [
        ("capital of France", "p1"),
        ("What is the capital of Germany?", "p2"),
        ("who created the Python programming language", "p3"),
        ("highest mountain", "p4"),
        ("river in Africa", "p5"),
    ],
)
def test_top1_on_small_corpus(query, top):
    index = BM25Index([f"{r['title']}\n{r['text']}" for r in CORPUS])
    best, _ = index.search(query, k=1)[0]
    assert CORPUS[best]["id"] == top


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in CORPUS) + "\n\n")
    return str(path)


def test_search_tool_formats_top_k(corpus_file):
    tool = SearchTool.from_jsonl(corpus_file, top_k=2, max_passage_chars=20)
    r = tool.call({"query": "capital city"})
    assert r.status == ToolStatus.OK
    assert r.text.startswith("[1] Paris\nParis is the capital ...")
    assert "\n\n[2] Berlin\n" in r.text
    assert r.text.count("[") == 2


def test_search_tool_empty_and_invalid(corpus_file):
    tool = SearchTool.from_jsonl(corpus_file)
    r = tool.call({"query": "zzzz qqqq"})
    assert r.status == ToolStatus.EMPTY and "no passages match" in r.text
    assert tool.call({"query": "  "}).status == ToolStatus.INVALID_CALL
    assert tool.call({"q": "x"}).status == ToolStatus.INVALID_CALL


def test_corpus_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "ok"}\n{"id": 2, "body": "no text"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: .*\"text\""):
        load_corpus(str(bad))
    bad.write_text('{"id": 1, "text": "ok"}\n{not json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a JSON line"):
        load_corpus(str(bad))
    with pytest.raises(ValueError, match="cannot be read"):
        load_corpus(str(tmp_path / "missing.jsonl"))
    bad.write_text("\n")
    with pytest.raises(ValueError, match="no passages"):
        load_corpus(str(bad))
