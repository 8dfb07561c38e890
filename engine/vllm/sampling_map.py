"""Our sampling parameters and stop conditions as vLLM's."""

from __future__ import annotations

from typing import Any

from vllm import SamplingParams as VllmSamplingParams
from vllm.sampling_params import RequestOutputKind

from engine.events import FinishReason
from engine.sampling import SamplingParams
from engine.vllm.connector import PARAMS_KEY
from engine.vllm.handoff import HandoffSpec


def to_vllm(
    params: SamplingParams, eos_ids: frozenset[int], handoff: HandoffSpec | None
) -> VllmSamplingParams:
    """Temperature 0 is greedy in both; stop strings are cut from the text as ours are; our EOS set
    (config, tokenizer and generation config) stops generation like vLLM's own EOS."""
    extra: dict[str, Any] | None = None
    if handoff is not None:
        extra = {"kv_transfer_params": {PARAMS_KEY: handoff.to_params()}}
    return VllmSamplingParams(
        n=1,
        temperature=params.temperature,
        top_p=params.top_p,
        seed=params.seed,
        max_tokens=params.max_tokens,
        stop=list(params.stop) or None,
        stop_token_ids=sorted(eos_ids),
        include_stop_str_in_output=False,
        skip_special_tokens=True,
        output_kind=RequestOutputKind.DELTA,
        extra_args=extra,
    )


def finish_reason(vllm_reason: str | None) -> FinishReason:
    """vLLM's 'stop' (EOS, stop token or string) and 'length' are ours; anything else ended early."""
    if vllm_reason == "stop":
        return "stop"
    if vllm_reason == "length":
        return "length"
    return "cancelled"
