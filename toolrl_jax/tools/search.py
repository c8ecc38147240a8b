"""The ``search`` tool: BM25 over a local corpus of passages, top-k formatted for the model.

Corpus format: JSONL, one passage per line, ``{"id": …, "title": …, "text": …}`` (``title`` may be
empty; ``id`` defaults to the line number). Title and text are indexed together.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

from toolrl_jax.jsonl import iter_json_lines
from toolrl_jax.tools.base import ToolResult, string_argument
from toolrl_jax.tools.bm25 import BM25Index
from toolrl_jax.types import ToolStatus


@dataclasses.dataclass(frozen=True)
class Passage:
    id: str
    title: str
    text: str


def load_corpus(path: str) -> list[Passage]:
    """Reads a JSONL corpus; a bad line raises ValueError naming the file and line."""
    passages = []
    try:
        lines = list(iter_json_lines(path))
    except OSError as e:
        raise ValueError(f"search corpus {path!r} cannot be read: {e}") from e
    for lineno, row in lines:
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise ValueError(f'{path}:{lineno}: each line must be an object with a "text" string')
        passages.append(Passage(str(row.get("id", lineno)), str(row.get("title") or ""), row["text"]))
    if not passages:
        raise ValueError(f"search corpus {path!r} has no passages")
    return passages


class SearchTool:
    name = "search"
    description = "Searches a local collection of passages (BM25) and returns the best matches."
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "keywords to search for"}},
        "required": ["query"],
    }

    def __init__(
        self,
        passages: Sequence[Passage],
        top_k: int = 3,
        k1: float = 1.5,
        b: float = 0.75,
        max_passage_chars: int = 600,
    ):
        self.passages = list(passages)
        self.top_k = top_k
        self.max_passage_chars = max_passage_chars
        self.index = BM25Index([f"{p.title}\n{p.text}" for p in self.passages], k1=k1, b=b)

    @classmethod
    def from_jsonl(cls, path: str, **kwargs: Any) -> SearchTool:
        return cls(load_corpus(path), **kwargs)

    def call(self, args: Mapping[str, Any]) -> ToolResult:
        start = time.monotonic()
        query = string_argument(args, "query", self.name)
        if isinstance(query, ToolResult):
            return query
        if not query.strip():
            return ToolResult(ToolStatus.INVALID_CALL, "search: empty query")
        hits = self.index.search(query, self.top_k)
        elapsed = time.monotonic() - start
        if not hits:
            return ToolResult(ToolStatus.EMPTY, f"no passages match {query.strip()!r}",
                              elapsed_s=elapsed)
        return ToolResult(ToolStatus.OK, self.format_hits(hits), elapsed_s=elapsed)

    def format_hits(self, hits: Sequence[tuple[int, float]]) -> str:
        blocks = []
        for rank, (i, _score) in enumerate(hits, 1):
            p = self.passages[i]
            text = p.text.strip()
            if len(text) > self.max_passage_chars:
                text = text[: self.max_passage_chars].rstrip() + " ..."
            head = f"[{rank}] {p.title}" if p.title else f"[{rank}]"
            blocks.append(f"{head}\n{text}")
        return "\n\n".join(blocks)
