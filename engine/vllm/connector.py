"""Our KV connector for vLLM: blended chunk K/V enter vLLM's paged cache as already computed tokens.

vLLM loads it by `kv_connector_module_path` in two roles, each in its own process:

- scheduler side: a request whose `kv_transfer_params["ragblend"]` names a handoff file (written by the
  backend, engine/vllm/handoff.py) reports its first `tokens` tokens as computed, so vLLM allocates
  their blocks and schedules only the rest. The backend never hands over the last prompt token: vLLM
  must compute at least one token to produce the first output's logits.
- worker side: before the step's forward, the K/V of those tokens are written into the allocated
  blocks by slot mapping (engine/vllm/paged_kv.py), from the handoff file or, when the blend ran in
  this worker (engine/vllm/worker_ext.py), from the worker's memory (engine/vllm/held.py). K/V that
  cannot be read mark their blocks as failed, and vLLM recomputes them (kv_load_failure_policy
  "recompute"): a lost handoff costs a prefill, never a wrong answer.

Nothing is saved back through the connector: chunk caches are written by the serving process (with
caches computed by the worker when the blend runs there).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from vllm.distributed.kv_transfer.kv_connector.v1.base import (
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
)

from engine.vllm import held
from engine.vllm.handoff import HandoffSpec, read_handoff
from engine.vllm.paged_kv import PagedWriter, slot_mapping, writer_for

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.forward_context import ForwardContext
    from vllm.v1.attention.backend import AttentionMetadata
    from vllm.v1.core.kv_cache_manager import KVCacheBlocks
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.kv_cache_interface import KVCacheConfig
    from vllm.v1.request import Request

log = logging.getLogger(__name__)

PARAMS_KEY = "ragblend"
_LAYER_INDEX = re.compile(r"layers\.(\d+)\.")


@dataclass
class LoadJob:
    """Load positions [start, end) of one request's handoff into `slots` of the paged cache."""

    request_id: str
    spec: dict[str, Any]
    start: int
    end: int
    slots: list[int]
    block_size: int


@dataclass
class RagblendMetadata(KVConnectorMetadata):
    loads: list[LoadJob] = field(default_factory=list)


def handoff_of(request: Request) -> HandoffSpec | None:
    raw = (request.kv_transfer_params or {}).get(PARAMS_KEY)
    if raw is None:
        return None
    try:
        return HandoffSpec.from_params(raw)
    except ValueError as exc:
        log.warning("request %s: ignoring its handoff: %s", request.request_id, exc)
        return None


class RagblendConnector(KVConnectorBase_V1):
    def __init__(
        self, vllm_config: VllmConfig, role: KVConnectorRole, kv_cache_config: KVCacheConfig
    ) -> None:
        super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
        self._block_size = vllm_config.cache_config.block_size
        extra = self._kv_transfer_config.kv_connector_extra_config
        self._handoff_dir: str | None = extra.get("handoff_dir")
        # scheduler side: the local hit each request was asked about, then its planned load
        self._asked: dict[str, tuple[HandoffSpec, int]] = {}
        self._pending: list[LoadJob] = []
        # worker side
        self._kv_caches: dict[str, torch.Tensor] = {}
        self._layer_names: list[str] = []
        self._writer: PagedWriter | None = None
        self._failed_blocks: set[int] = set()

    # ---------------- scheduler side ----------------

    def get_num_new_matched_tokens(
        self, request: Request, num_computed_tokens: int
    ) -> tuple[int | None, bool]:
        spec = handoff_of(request)
        if spec is None:
            return 0, False
        # Never the whole prompt: vLLM computes at least its last token to sample the first output.
        tokens = min(spec.tokens, request.num_prompt_tokens - 1)
        self._asked[request.request_id] = (spec, num_computed_tokens)
        return max(0, tokens - num_computed_tokens), False

    def update_state_after_alloc(
        self, request: Request, blocks: KVCacheBlocks, num_external_tokens: int
    ) -> None:
        if num_external_tokens <= 0 or request.request_id not in self._asked:
            return
        spec, start = self._asked[request.request_id]
        end = start + num_external_tokens
        block_ids = blocks.get_block_ids()[0]
        slots = slot_mapping(block_ids, self._block_size, start, end)
        self._pending.append(
            LoadJob(request.request_id, spec.to_params(), start, end, slots.tolist(), self._block_size)
        )

    def build_connector_meta(self, scheduler_output: SchedulerOutput) -> KVConnectorMetadata:
        meta = RagblendMetadata(loads=self._pending)
        self._pending = []
        return meta

    def request_finished(self, request: Request, block_ids: list[int]) -> tuple[bool, dict[str, Any] | None]:
        self._asked.pop(request.request_id, None)
        return False, None

    # ---------------- worker side ----------------

    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]) -> None:
        self._kv_caches = dict(kv_caches)
        self._layer_names = sorted(kv_caches, key=_layer_index)

    def _writer_for(self, forward_context: ForwardContext) -> PagedWriter:
        if self._writer is None:
            layers = forward_context.no_compile_layers
            first = layers[self._layer_names[0]]
            isa_of = {name: str(getattr(layers[name], "isa", "")) for name in self._layer_names}
            self._writer = writer_for(first.attn_backend.get_name(), isa_of)
        return self._writer

    def start_load_kv(self, forward_context: ForwardContext, **kwargs: Any) -> None:
        meta = self._get_connector_metadata()
        if not isinstance(meta, RagblendMetadata) or not meta.loads:
            return
        writer = self._writer_for(forward_context)
        for job in meta.loads:
            try:
                self._load(job, writer)
            except Exception as exc:  # the blocks are recomputed by vLLM instead
                log.warning("request %s: blended KV not loaded (%s); recomputing", job.request_id, exc)
                self._failed_blocks.update({s // job.block_size for s in job.slots})

    def _load(self, job: LoadJob, writer: PagedWriter) -> None:
        spec = HandoffSpec.from_params(job.spec)
        if spec.layers != len(self._layer_names) or job.end > spec.tokens:
            raise ValueError(f"handoff of {spec.layers} layers x {spec.tokens} tokens does not fit this load")
        slots = torch.tensor(job.slots, dtype=torch.long)
        if held.is_held(spec.path):  # blended in this process (engine/vllm/worker_ext.py)
            for i, name in enumerate(self._layer_names):
                rows = held.rows(spec.path, i, job.start, job.end)
                if rows is None:
                    raise ValueError("the held K/V were released before their load")
                writer.write(name, self._kv_caches[name], rows[0], rows[1], slots)
            return
        k, v = read_handoff(spec, self._handoff_dir)
        for i, name in enumerate(self._layer_names):
            writer.write(
                name, self._kv_caches[name], k[i, job.start : job.end], v[i, job.start : job.end], slots
            )

    def get_block_ids_with_load_errors(self) -> set[int]:
        failed, self._failed_blocks = self._failed_blocks, set()
        return failed

    def wait_for_layer_load(self, layer_name: str) -> None:
        return None  # everything is written in start_load_kv, before the forward

    def save_kv_layer(
        self, layer_name: str, kv_layer: torch.Tensor, attn_metadata: AttentionMetadata, **kwargs: Any
    ) -> None:
        return None

    def wait_for_save(self) -> None:
        return None


def _layer_index(name: str) -> int:
    match = _LAYER_INDEX.search(name)
    return int(match.group(1)) if match else 0
