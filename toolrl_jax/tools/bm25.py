"""Okapi BM25 over an in-memory list of texts, in NumPy.

Why not a library: ``bm25s`` (the well-kept choice; it installs cleanly and works offline) runs
``jax.lax.top_k`` at *import time* whenever JAX is installed. In the trainer that is a JAX
computation on the default backend issued from the tools layer, possibly before
``jax.distributed.initialize`` on a multi-host TPU run, and it breaks the layering rule that
``tools/`` never imports jax. The scoring below is the Lucene (>= 8) variant bm25s uses by default
(scores checked equal to bm25s 0.3.16 while writing this):

    idf(t)        = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    score(q, d)   = sum over distinct query terms t of
                    idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))

(Lucene dropped the classic ``(k1 + 1)`` numerator factor: a constant that changes no ranking.)

Each term's per-document contribution is computed once at index time and stored as CSR postings
(term -> [doc ids], [weights]), so a query is a few vectorised scatter-adds plus a top-k.
Tokens are lower-cased ``\\w+`` runs with English stop words removed; no stemming. Sized for local
corpora (up to a few million passages); a Wikipedia-scale index would want an on-disk engine.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"\w+", re.UNICODE)

ENGLISH_STOPWORDS = frozenset(
    "a about above after again against all am an and any are as at be because been before being "
    "below between both but by can could did do does doing down during each few for from further "
    "had has have having he her here hers herself him himself his how i if in into is it its "
    "itself just me more most my myself no nor not now of off on once only or other our ours "
    "ourselves out over own same she should so some such than that the their theirs them "
    "themselves then there these they this those through to too under until up very was we were "
    "what when where which while who whom why will with would you your yours yourself yourselves"
    .split()
)


def tokenize(text: str, stopwords: frozenset[str] = ENGLISH_STOPWORDS) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in stopwords]


class BM25Index:
    """BM25 index of ``texts``; ``search(query, k)`` returns [(doc index, score)] best first."""

    def __init__(
        self,
        texts: Sequence[str],
        k1: float = 1.5,
        b: float = 0.75,
        stopwords: frozenset[str] = ENGLISH_STOPWORDS,
    ):
        self.k1, self.b, self.stopwords = k1, b, stopwords
        self.num_docs = len(texts)
        docs = [Counter(tokenize(t, stopwords)) for t in texts]
        lengths = np.array([sum(c.values()) for c in docs], dtype=np.float64)
        avgdl = float(lengths.mean()) if self.num_docs and lengths.sum() > 0 else 1.0

        # Postings grouped by term: collect (term id, doc id, tf), then sort by term.
        self.vocab: dict[str, int] = {}
        term_ids, doc_ids, tfs = [], [], []
        for d, counts in enumerate(docs):
            for term, tf in counts.items():
                term_ids.append(self.vocab.setdefault(term, len(self.vocab)))
                doc_ids.append(d)
                tfs.append(tf)
        term_ids_a = np.asarray(term_ids, dtype=np.int64)
        order = np.argsort(term_ids_a, kind="stable")
        self._doc_ids = np.asarray(doc_ids, dtype=np.int64)[order]
        tf = np.asarray(tfs, dtype=np.float64)[order]
        df = np.bincount(term_ids_a, minlength=len(self.vocab)).astype(np.float64)
        self._ptr = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)

        idf = np.log1p((self.num_docs - df + 0.5) / (df + 0.5))
        norm = k1 * (1.0 - b + b * lengths[self._doc_ids] / avgdl)
        self._weights = idf[term_ids_a[order]] * tf / (tf + norm)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (float64 [num_docs])."""
        out = np.zeros(self.num_docs, dtype=np.float64)
        for term in set(tokenize(query, self.stopwords)):
            t = self.vocab.get(term)
            if t is None:
                continue
            s, e = self._ptr[t], self._ptr[t + 1]
            out[self._doc_ids[s:e]] += self._weights[s:e]  # doc ids are unique within a term
        return out

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Top ``k`` documents with a positive score; ties go to the earlier document."""
        scores = self.scores(query)
        hits = np.flatnonzero(scores > 0)
        if hits.size == 0:
            return []
        order = np.lexsort((hits, -scores[hits]))[:k]
        return [(int(hits[i]), float(scores[hits[i]])) for i in order]
