"""Our sampling parameters and stop conditions as vLLM's."""

from __future__ import annotations

from typing import Any

from vllm import SamplingParams as VllmSamplingParams
from vllm.sampling_params import RequestOutputKind

from engine.events import FinishReason
from engine.logprobs import TokenLogprob
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
        stop_token_ids=[] if params.ignore_eos else sorted(eos_ids),
        ignore_eos=params.ignore_eos,
        include_stop_str_in_output=False,
        skip_special_tokens=True,
        output_kind=RequestOutputKind.DELTA,
        extra_args=extra,
        logprobs=params.logprobs,
    )


def prompt_scoring_params(top: int) -> VllmSamplingParams:
    """One greedy step that returns the prompt's log-probabilities (`top` alternatives each)."""
    return VllmSamplingParams(
        n=1, temperature=0.0, max_tokens=1, prompt_logprobs=top, output_kind=RequestOutputKind.FINAL_ONLY
    )


def from_vllm_logprobs(token_ids: list[int], entries: Any, top: int) -> list[TokenLogprob]:
    """vLLM's per-token dicts {token id: Logprob} (the top ones by rank plus the sampled token, raw
    log-probabilities by default, as ours) as our TokenLogprob, alternatives best first."""
    out = []
    for token, entry in zip(token_ids, entries or [], strict=False):
        ranked = sorted(((int(t), float(lp.logprob)) for t, lp in entry.items()), key=lambda x: -x[1])
        out.append(TokenLogprob(int(token), float(entry[token].logprob), tuple(ranked[:top])))
    return out


def finish_reason(vllm_reason: str | None) -> FinishReason:
    """vLLM's 'stop' (EOS, stop token or string) and 'length' are ours; anything else ended early."""
    if vllm_reason == "stop":
        return "stop"
    if vllm_reason == "length":
        return "length"
    return "cancelled"
