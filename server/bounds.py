"""Static bounds in the request schemas on numbers the settings cap further, so that no value (2**70,
1e308) gets past validation; the settings' own limits (max_tokens_limit, retrieval_max_top_k) are
checked after, with messages naming them."""

from __future__ import annotations

MAX_TOKENS_BOUND = 1 << 20  # longer than any model's context
TOP_K_BOUND = 10_000
