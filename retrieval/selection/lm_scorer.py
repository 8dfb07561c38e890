"""Utility as the engine's own log-likelihood of the query given the combination (slow, accurate)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from engine.model import LlamaModel
from engine.prompt import PromptBuilder
from retrieval.selection.candidate import Candidate
from retrieval.selection.scorer import Combination, PreparedScorer, UtilityScorer


class LMLikelihoodScorer(UtilityScorer):
    """U = exp(mean log p(query tokens | system prefix, chunks in order, "Question:")).

    The geometric-mean probability of the query's tokens, read by the model that will answer: a
    combination that makes the question predictable holds what the question is about. It lies in
    [0, 1] as the search expects. Each combination costs a forward pass, so this suits offline
    evaluation or small candidate sets; children of one node share the parent's K/V (computed once
    per expansion), so only the appended chunk and the query run per child. A combination longer
    than the model's context scores 0. Run it where the engine's model may be used (one pass at a
    time per engine).
    """

    name = "lm-likelihood"

    def __init__(self, model: LlamaModel, prompts: PromptBuilder, system: str | None = None) -> None:
        self.model = model
        self.prompts = prompts
        self.system = system

    def prepare(self, query: str, candidates: Sequence[Candidate]) -> PreparedLikelihood:
        prefix = self.prompts.prefix(self.system, with_documents=True).ids
        docs = [self.prompts.document(c.text).ids for c in candidates]
        lead = self.prompts.encode("Question:")
        target = self.prompts.encode(" " + query.strip())
        if not target:
            raise ValueError("the query has no tokens to score")
        return PreparedLikelihood(self.model, prefix, docs, lead, target)


class PreparedLikelihood(PreparedScorer):
    def __init__(
        self,
        model: LlamaModel,
        prefix: tuple[int, ...],
        docs: list[tuple[int, ...]],
        lead: tuple[int, ...],
        target: tuple[int, ...],
    ) -> None:
        self.model = model
        self.prefix = prefix
        self.docs = docs
        self.tail = lead + target
        self.target = torch.tensor(target)
        self.limit = model.rope.max_positions

    def score(self, combos: Sequence[Combination]) -> list[float]:
        groups: dict[Combination, list[int]] = {}
        for k, combo in enumerate(combos):
            if not combo:
                raise ValueError("an empty combination has no score")
            groups.setdefault(combo[:-1], []).append(k)
        out = [0.0] * len(combos)
        for parent, members in groups.items():
            values = self._score_children(parent, [combos[k][-1] for k in members])
            for k, value in zip(members, values, strict=True):
                out[k] = value
        return out

    def _score_children(self, parent: Combination, added: list[int]) -> list[float]:
        shared = list(self.prefix) + [t for i in parent for t in self.docs[i]]
        longest = max(len(self.docs[i]) for i in added) + len(self.tail)
        if len(shared) + longest > self.limit:
            fits = [len(shared) + len(self.docs[i]) + len(self.tail) <= self.limit for i in added]
            if not any(fits):
                return [0.0] * len(added)
        kv = self.model.new_cache(min(len(shared) + longest, self.limit))
        self.model.forward(torch.tensor(shared), kv)
        scores = []
        for i in added:
            ids = list(self.docs[i]) + list(self.tail)
            if len(shared) + len(ids) > self.limit:
                scores.append(0.0)
                continue
            kv.length = len(shared)  # rewind: every child continues from the parent's K/V
            logits = self.model.forward(torch.tensor(ids), kv, all_logits=True)
            # logits at position p predict token p + 1: the target's predictions end one before the end
            n = len(self.target)
            pred = torch.log_softmax(logits[-n - 1 : -1].float(), dim=-1)
            mean_lp = float(pred.gather(1, self.target[:, None]).mean())
            scores.append(math.exp(mean_lp))
        return scores
