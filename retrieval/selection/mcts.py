"""CORAG's Monte Carlo tree search over ordered chunk combinations under a cost budget.

A node is an ordered list of chunks (the root is empty); its children append one more unused
chunk, so [a, b] and [b, a] are different nodes. Each iteration:

1. Selection: from the root, follow the child of highest
   U = V/N + C sqrt(ln N_parent / N) - lambda cost / B  (ties broken by the seeded generator)
   down to a node not yet expanded.
2. Expansion: create every child that fits the budget at once and score them all in one scorer
   call (CORAG's parallel expansion; there is no random rollout, the score is the simulation).
   Each child starts with V = its reward, N = 1.
3. Backpropagation, as the paper describes: only the best new child's reward goes up, adding it to
   V and 1 to N of the expanded node and every ancestor. (The reference code instead adds every
   child's reward, one visit each; that inflates N of wide nodes by their branching factor.)

A node with no child that fits is terminal; selecting it again backs up its own reward, so the
search turns elsewhere. The search stops after `iterations`, at the time cap, or when every node
within the budget has been expanded.

Final choice: the explored node of highest own reward (ties: more visits, then deeper). Here we
follow the reference code, not the paper, which takes the highest average V/N: a node's average
mixes in its descendants' rewards, so it can win on the merit of longer combinations it is not,
while the aim is the combination of highest utility within the budget.

Budget: unlike the reference code, where the hard filter runs only with one of its rerankers, no
node over the budget is ever created. Costs are non-negative and appending never changes what
earlier chunks cost (cost.py), so an over-budget node has no descendant within budget either, and
scoring it would spend the scorer on a combination that can never be chosen.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from retrieval.selection.cost import ChunkCosts
from retrieval.selection.scorer import Combination, PreparedScorer

StopReason = Literal["iterations", "time", "exhausted"]
# Costs are sums of floats: a combination exactly at the budget must not fail on rounding.
BUDGET_SLACK = 1e-9


@dataclass(eq=False)
class Node:
    seq: Combination
    cost: float
    reward: float
    parent: Node | None
    visits: int = 0
    value: float = 0.0
    expanded: bool = False
    children: list[Node] = field(default_factory=list)

    def backup(self, reward: float) -> None:
        node: Node | None = self
        while node is not None:
            node.visits += 1
            node.value += reward
            node = node.parent


@dataclass(frozen=True)
class SearchParams:
    budget: float  # math.inf for none
    iterations: int
    c: float
    lambda_: float
    seed: int
    time_cap_ms: float


@dataclass(frozen=True)
class SearchResult:
    best: Node | None  # None when no single chunk fits the budget
    iterations: int
    scored: int
    nodes: int
    stopped_by: StopReason


class TreeSearch:
    """One search: a tree over `n` candidates with per-candidate `costs`, rewards from `scorer`."""

    def __init__(self, scorer: PreparedScorer, costs: ChunkCosts, n: int, params: SearchParams) -> None:
        self.scorer = scorer
        self.costs = costs
        self.n = n
        self.params = params
        self.rng = np.random.default_rng(params.seed)
        self.root = Node((), 0.0, 0.0, None)
        self.nodes: list[Node] = []
        self.unexpanded = 1  # the root
        self.scored = 0

    def run(self) -> SearchResult:
        deadline = time.perf_counter() + self.params.time_cap_ms / 1000.0
        done = 0
        stopped: StopReason = "iterations"
        while done < self.params.iterations:
            if self.unexpanded == 0:
                stopped = "exhausted"
                break
            if time.perf_counter() >= deadline:
                stopped = "time"
                break
            self.iterate()
            done += 1
        best = max(self.nodes, key=lambda v: (v.reward, v.visits, len(v.seq)), default=None)
        return SearchResult(best, done, self.scored, len(self.nodes), stopped)

    def iterate(self) -> None:
        node = self.root
        while node.expanded and node.children:
            node = self.select_child(node)
        if node.expanded:  # terminal: nothing more fits after it
            node.backup(node.reward)
            return
        self.expand(node)

    def ucb(self, parent: Node) -> np.ndarray:
        kids = parent.children
        visits = np.array([k.visits for k in kids], dtype=np.float64)
        mean = np.array([k.value for k in kids]) / visits
        explore = self.params.c * np.sqrt(math.log(max(parent.visits, 1)) / visits)
        budget = self.params.budget
        penalty = (
            self.params.lambda_ * np.array([k.cost for k in kids]) / budget
            if math.isfinite(budget)
            else np.zeros(len(kids))
        )
        return mean + explore - penalty

    def select_child(self, parent: Node) -> Node:
        scores = self.ucb(parent)
        best = np.flatnonzero(scores >= scores.max() - 1e-12)
        pick = int(best[0]) if len(best) == 1 else int(self.rng.choice(best))
        return parent.children[pick]

    def expand(self, node: Node) -> None:
        node.expanded = True
        self.unexpanded -= 1
        used = set(node.seq)
        limit = self.params.budget + BUDGET_SLACK
        options = []
        for i in range(self.n):
            if i in used:
                continue
            cost = self.costs.extend(node.cost, node.seq, i)
            if cost <= limit:
                options.append((i, cost))
        if not options:
            node.backup(node.reward)
            return
        combos = [(*node.seq, i) for i, _ in options]
        rewards = self.scorer.score(combos)
        self.scored += len(combos)
        for combo, (_, cost), reward in zip(combos, options, rewards, strict=True):
            child = Node(combo, cost, float(reward), node, visits=1, value=float(reward))
            node.children.append(child)
            self.nodes.append(child)
        self.unexpanded += len(options)
        node.backup(float(max(rewards)))
