"""Settings of the vLLM backend (plain data: importing this module does not import vLLM)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VllmOptions:
    """How the backend starts vLLM. Built from `Settings` (RAGBLEND_VLLM_*) and passed down."""

    # KV cache of the paged pool. On CPU this is VLLM_CPU_KVCACHE_SPACE (GiB of host memory); on a GPU
    # `gpu_memory_utilization` below decides instead.
    kv_cache_gib: int = 1
    gpu_memory_utilization: float = 0.5
    # vLLM's own prefix caching (hash of full blocks of exactly the same leading tokens). On, a prompt
    # that vLLM prefills whole (mode `full`, or a blend mode whose pieces are mostly uncached) reuses
    # the blocks of an earlier one of the same tenant, so a question repeated before its pieces are
    # stored is still served from cache. Blended blocks are kept apart by a salt of their own.
    prefix_caching: bool = True
    # Eager mode starts in ~15 s on these CPUs instead of 60-85 s with graph compilation.
    enforce_eager: bool = True
    max_num_seqs: int = 16
    # Cores vLLM keeps for itself on CPU (its default is 1; 0 lets the worker use all of them).
    reserved_cpus: int = 0
    start_timeout_s: float = 600.0
    # Where blended K/V wait for the worker (a tmpfs such as /dev/shm when there is one); None: pick.
    handoff_dir: str | None = None
    # Blend inside vLLM's worker on its own loaded model (engine/vllm/worker_blend.py): no second copy
    # of the weights. False: blend here on our own copy of the weights (engine/vllm/prepare.py).
    blend_in_worker: bool = True
    # Run the worker inside vLLM's engine-core process (its "uni" executor) instead of a process of
    # its own. With one worker there is nothing to gain from the extra process, and its message queue
    # readers spin on a core for up to a second after each message: on a CPU with few cores that spin
    # takes a core from the model while it prefills or blends.
    worker_in_core: bool = True

    def __post_init__(self) -> None:
        if self.kv_cache_gib < 1:
            raise ValueError("vllm kv_cache_gib must be >= 1 (whole GiB)")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("vllm gpu_memory_utilization must be in (0, 1]")
        if self.max_num_seqs < 1:
            raise ValueError("vllm max_num_seqs must be >= 1")
        if self.reserved_cpus < 0:
            raise ValueError("vllm reserved_cpus must be >= 0")
