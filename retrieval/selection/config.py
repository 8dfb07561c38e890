"""Per-request chunk-selection settings: which method, the budget, and the search's knobs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SelectionMethod = Literal["topk", "corag"]
BudgetUnit = Literal["tokens", "ms"]

# Caps keep one request from buying an unbounded search; a larger value gets a 422 naming the field.
MAX_ITERATIONS = 2000
MAX_TIME_CAP_MS = 10_000.0
MAX_BUDGET_TOKENS = 1_000_000


class SelectionConfig(BaseModel):
    """How the chunks of a prompt are chosen among the retrieved candidates.

    - topk: rank the candidates by their own utility and add them greedily while they fit the budget
      (the baseline: retrieve, rerank, fill).
    - corag: CORAG's Monte Carlo tree search over ordered combinations (see ``mcts.py``).

    The defaults suit the embedded model (SmolLM2-135M, 8k context) with prompts of 6-10 passages of
    about 150 tokens: a budget of 1536 prefill tokens, C = 2.0 (the CORAG technical report finds C
    near 2 best), lambda = 0.1 (the reference code's fixed setting), and 64 iterations, more than
    the paper's 10-25 because our default scorer costs matrix look-ups instead of a reranker call.
    The time cap bounds the tree search, keeping it a small share of the time to first token.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    method: SelectionMethod = "corag"
    # What the chosen chunks may cost to prefill, in `budget_unit` (see cost.py).
    budget: float = Field(1536.0, gt=0, le=MAX_BUDGET_TOKENS)
    budget_unit: BudgetUnit = "tokens"
    iterations: int = Field(64, ge=1, le=MAX_ITERATIONS)
    c: float = Field(2.0, ge=0.0, le=100.0)
    lambda_: float = Field(0.1, ge=0.0, le=100.0, alias="lambda")
    seed: int = Field(0, ge=0, le=2**64 - 1)
    time_cap_ms: float = Field(30.0, gt=0, le=MAX_TIME_CAP_MS)
    # corag: extend the search's pick greedily while the utility rises and the budget allows
    # (completion.py); it lets a cheap, warm-cache budget be spent without more iterations.
    complete: bool = True

    @model_validator(mode="after")
    def _check_budget(self) -> SelectionConfig:
        if self.budget_unit == "tokens" and self.budget > MAX_BUDGET_TOKENS:
            raise ValueError(f"budget of {self.budget:g} tokens exceeds the cap of {MAX_BUDGET_TOKENS}")
        return self
