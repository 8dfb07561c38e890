"""Questions and their candidate chunks for the selection benchmark (bench/selection.py).

- MuSiQue: an example's 10 passages are its candidates; gold: the passages containing an answer
  string (the data has no supporting flags), and examples with none are skipped.
- SQuAD 2.0 (answerable questions): the 10 paragraphs of the question's article closest to it by
  embedding, as a per-article collection's flat index returns them; gold: the question's own paragraph.

`dev=True` draws a disjoint slice (MuSiQue from the end of the file, SQuAD questions half a stride
further on), so defaults are tuned on other questions than the ones the benchmark reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench import datasets
from bench.corag import QueryMemo
from engine.torch_engine import TorchEngine
from retrieval.selection import Candidate

CANDIDATES = 10


@dataclass(frozen=True)
class Example:
    dataset: str
    question: str
    answers: list[str]
    cands: list[Candidate]  # all marked warm; a cold method re-marks them
    gold: frozenset[int]


def as_candidates(engine: TorchEngine, texts: list[str], vectors: np.ndarray) -> list[Candidate]:
    out = []
    for j, text in enumerate(texts):
        ids = engine.prompts.document(text).ids
        out.append(Candidate(f"c{j}", text, len(ids), True, tuple(ids), vectors[j]))
    return out


def musique(n: int, engine: TorchEngine, embedder: QueryMemo, dev: bool = False) -> list[Example]:
    rows = datasets.musique()
    out: list[Example] = []
    for ex in reversed(rows) if dev else rows:
        if len(out) == n:
            break
        answers = [a.lower() for a in ex["answers"]]
        texts = [f"{c['title']}. {c['text']}" for c in ex["ctxs"]]
        gold = frozenset(j for j, t in enumerate(texts) if any(a in t.lower() for a in answers))
        if gold:  # recall needs an answer-bearing passage
            cands = as_candidates(engine, texts, embedder.embed(texts))
            out.append(Example("musique", ex["question"], ex["answers"], cands, gold))
    return out


def squad(n: int, engine: TorchEngine, embedder: QueryMemo, dev: bool = False) -> list[Example]:
    if n <= 0:
        return []
    articles = datasets.squad()["data"]
    questions = [
        (a, p, qa)
        for a, article in enumerate(articles)
        for p, para in enumerate(article["paragraphs"])
        for qa in para["qas"]
        if not qa["is_impossible"]
    ]
    step = max(2, len(questions) // n)  # spread over the articles
    picked = questions[step // 2 if dev else 0 :: step][:n]
    vectors = {a: embedder.embed([p["context"] for p in articles[a]["paragraphs"]]) for a, _, _ in picked}
    out = []
    for a, p, qa in picked:
        paras = articles[a]["paragraphs"]
        order = np.argsort(-(vectors[a] @ embedder.embed_query(qa["question"])))[:CANDIDATES]
        texts = [paras[i]["context"] for i in order]
        gold = frozenset(j for j, i in enumerate(order) if i == p)
        answers = sorted({ans["text"] for ans in qa["answers"]})
        cands = as_candidates(engine, texts, vectors[a][order])
        out.append(Example("squad", qa["question"], answers, cands, gold))
    return out
