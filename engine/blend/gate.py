"""A correctness gate per model: does the default blend mode keep the full prefill's answers?

At load, the engine prefills a few shipped prompts (engine/blend/gate_texts.py) in full, takes the greedy
answer as the reference, and measures the drop in mean log-probability per token of that answer under
the blended cache (teacher forcing). The default mode passes when the mean drop is at most `max_drop`.
If it misses, the ratio is raised to each of `fallback_ratios` in turn; if all miss, requests that do
not choose a mode get `full`. Any checkpoint can replace the embedded model; this keeps a model the
method does not suit from silently giving worse answers.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field, replace

import torch

from cache.memory_tier import MemoryTier
from engine.blend.blender import Blender
from engine.blend.chunk_cache import ChunkCache
from engine.blend.gate_texts import GATE_PROMPTS
from engine.blend.options import BlendOptions, GateConfig
from engine.kv_cache import KVCache
from engine.model import LlamaModel
from engine.prompt import Prompt, PromptBuilder

log = logging.getLogger(__name__)


@dataclass
class GateReport:
    """What the gate decided: `chosen` is the default for requests that name no mode."""

    chosen: BlendOptions
    passed: bool
    checked: list[dict[str, float | str]] = field(default_factory=list)  # mode, ratio, drop per try
    reason: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "mode": self.chosen.mode,
            "ratio": self.chosen.ratio,
            "checked": self.checked,
            "reason": self.reason,
            "seconds": round(self.seconds, 2),
        }


def _reference(model: LlamaModel, prompt: Prompt, steps: int, eos: frozenset[int]) -> tuple[list[int], float]:
    kv = model.new_cache(len(prompt) + steps + 1)
    logits = model.forward(torch.tensor(prompt.ids), kv)
    tokens: list[int] = []
    logps: list[float] = []
    for _ in range(steps):
        token = int(logits.argmax())
        logps.append(float(torch.log_softmax(logits, -1)[token]))
        tokens.append(token)
        if token in eos:
            break
        logits = model.forward(torch.tensor([token]), kv)
    return tokens, statistics.fmean(logps)


def _forced_logp(model: LlamaModel, kv: KVCache, logits: torch.Tensor, ref: list[int]) -> float:
    steps = [logits[None]]
    if len(ref) > 1:
        steps.append(model.forward(torch.tensor(ref[:-1]), kv, all_logits=True))
    logp = torch.log_softmax(torch.cat(steps), -1)
    return float(logp[torch.arange(len(ref)), torch.tensor(ref)].mean())


@torch.inference_mode()
def run_gate(
    model: LlamaModel,
    prompts: PromptBuilder,
    chunk_cache: ChunkCache,
    eos: frozenset[int],
    default: BlendOptions,
    cfg: GateConfig,
) -> GateReport:
    """Calibrate `default` on the shipped prompts; chunk caches go to a private store, not the server's."""
    started = time.perf_counter()
    if not cfg.enabled:
        return GateReport(default, True, reason="gate disabled by settings")
    if not default.reuses:
        return GateReport(default, True, reason=f"default mode {default.mode} reuses nothing")
    private = ChunkCache(MemoryTier(256 << 20), chunk_cache.cfg, chunk_cache.fingerprint, chunk_cache.dtype)
    blender = Blender(model, private)
    cases = []
    for i, (question, docs) in enumerate(GATE_PROMPTS[: max(1, cfg.prompts)]):
        prompt = prompts.build(question, list(docs), None)
        salt = f"gate-{i}"
        private.put_many(blender.precompute(prompt, blender.lookup(prompt, salt), salt))
        ref, full_logp = _reference(model, prompt, cfg.answer_tokens, eos)
        cases.append((prompt, salt, ref, full_logp))
    tries = [default] + [replace(default, ratio=r) for r in cfg.fallback_ratios if r > default.ratio]
    checked: list[dict[str, float | str]] = []
    for opts in tries:
        drops = []
        for prompt, salt, ref, full_logp in cases:
            result = blender.prefill(prompt, opts, len(prompt) + len(ref) + 1, salt)
            drops.append(full_logp - _forced_logp(model, result.kv, result.logits, ref))
        drop = statistics.fmean(drops)
        checked.append({"mode": opts.mode, "ratio": opts.ratio, "drop": round(drop, 4)})
        if drop <= cfg.max_drop:
            reason = f"{opts.mode} r={opts.ratio} loses {drop:.3f} nats/token <= {cfg.max_drop}"
            if opts is not default:
                reason = f"default ratio {default.ratio} missed the gate; raised: " + reason
                log.warning("blend gate: %s", reason)
            else:
                log.info("blend gate passed: %s", reason)
            return GateReport(opts, opts is default, checked, reason, time.perf_counter() - started)
    reason = (
        f"{default.mode} lost more than {cfg.max_drop} nats/token at every ratio tried "
        f"({', '.join(str(c['ratio']) + ': ' + str(c['drop']) for c in checked)}); default falls back to full"
    )
    log.warning("blend gate failed: %s", reason)
    return GateReport(BlendOptions(mode="full"), False, checked, reason, time.perf_counter() - started)
