"""What the vLLM tests share: multi-passage prompts (tests/texts.py), a plain vLLM (no connector) as
the reference, greedy decoding through the backend and through the torch engine's blender."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from engine.blend.options import BlendOptions
from engine.config import DTYPES
from engine.events import FinishEvent, TokenEvent
from engine.prompt import Prompt
from engine.sampling import SamplingParams
from engine.torch_engine import TorchEngine
from engine.vllm.options import VllmOptions
from tests.texts import EXAMPLES, passages_for

if TYPE_CHECKING:  # importable without vLLM, so the suite collects in an environment that lacks it
    from engine.vllm.backend import VllmEngine

# vLLM's prefix caching off: these tests measure what our connector injects, and usage would count
# what vLLM's own cache served (tests/engine/vllm/test_vllm_prefix_cache.py tests it on)
VLLM_OPTIONS = VllmOptions(kv_cache_gib=1, max_num_seqs=4, reserved_cpus=0, prefix_caching=False)


def rag_prompts(engine: TorchEngine, count: int, passages: int) -> list[Prompt]:
    """`count` questions, each with `passages` whole passages ("title\ntext")."""
    return [
        engine.build_prompt(
            EXAMPLES[i].question, [f"{p.title}\n{p.text}" for p in passages_for(i, passages)], None
        )
        for i in range(count)
    ]


def plain_vllm_greedy(
    model_dir: Path, dtype: str, prompts: list[Prompt], steps: int, eos_ids: frozenset[int]
) -> list[list[int]]:
    """Greedy tokens of vLLM with no KV connector at all (stopping at the same EOS ids as the backend),
    started for this and stopped after."""
    from vllm import SamplingParams as VllmSamplingParams
    from vllm.sampling_params import RequestOutputKind

    from engine.vllm.runtime import VllmRuntime, engine_args

    max_len = max(len(p) for p in prompts) + steps + 8
    runtime = VllmRuntime(engine_args(model_dir, dtype, max_len, VLLM_OPTIONS, None), VLLM_OPTIONS)
    params = VllmSamplingParams(
        temperature=0, max_tokens=steps, stop_token_ids=sorted(eos_ids), output_kind=RequestOutputKind.DELTA
    )

    async def run(rid: str, ids: list[int]) -> list[int]:
        tokens: list[int] = []
        async for o in runtime.generate(rid, {"prompt_token_ids": ids}, params):
            tokens += o.outputs[0].token_ids
        return tokens

    try:
        return [runtime.call(run(f"plain-{i}", p.ids)).result(timeout=600) for i, p in enumerate(prompts)]
    finally:
        runtime.close()


def backend_greedy(
    engine: VllmEngine, prompt: Prompt, steps: int, blend: BlendOptions | None, salt: str
) -> tuple[list[int], str, FinishEvent]:
    tokens, final = [], None
    for event in engine.generate(prompt, SamplingParams(max_tokens=steps), blend=blend, salt=salt):
        if isinstance(event, TokenEvent):
            tokens.append(event.token_id)
        else:
            final = event
    assert final is not None
    engine.settle()  # what the request taught the chunk cache is stored before the next one
    return tokens, final.text, final


def torch_greedy_text(
    engine: TorchEngine, prompt: Prompt, steps: int, blend: BlendOptions | None, salt: str
) -> str:
    """The torch engine's greedy answer over a full prefill (blend None) or the blender's cache."""
    n = len(prompt)
    if blend is None:
        kv = engine.model.new_cache(n + steps)
        logits = engine.model.forward(torch.tensor(prompt.ids), kv)
    else:
        result = engine.blender.prefill(prompt, blend, n + steps, salt)
        kv, logits = result.kv, result.logits
    tokens: list[int] = []
    for _ in range(steps):
        token = int(logits.argmax())
        if token in engine.eos_ids:
            break
        tokens.append(token)
        logits = engine.model.forward(torch.tensor([token]), kv)
    text = engine.tokenizer.decode(tokens, skip_special_tokens=True)
    assert isinstance(text, str)
    return text


def decode(engine: TorchEngine | VllmEngine, tokens: list[int]) -> str:
    text = engine.tokenizer.decode(tokens, skip_special_tokens=True)
    assert isinstance(text, str)
    return text


def dtype_of(engine: TorchEngine) -> str:
    return next(name for name, dt in DTYPES.items() if dt == engine.model.dtype)
