"""The one settings object of a ragblend process (environment prefix RAGBLEND_), built at start."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cache.config import StoreConfig
from engine.assets import EMBEDDED_MODEL, resolve_model
from engine.blend.options import GateConfig
from engine.config import EngineConfig
from engine.device import check_device_name, resolve_device
from engine.dtype_probe import remembered_dtype
from engine.vllm.options import VllmOptions
from server.api_keys import ApiKeySpec, load_tenant_secret


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ragblend"


class Settings(BaseSettings):
    """Every knob of the server, read once from the environment (RAGBLEND_*) and passed down."""

    model_config = SettingsConfigDict(env_prefix="RAGBLEND_", extra="ignore", protected_namespaces=())

    host: str = "127.0.0.1"
    port: int = 8000
    # a second port serving GET /metrics alone, with no key (for Prometheus inside the cluster)
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_host: str | None = None  # default: the same address as the API
    data_dir: Path = Field(default_factory=default_data_dir)
    model: str = EMBEDDED_MODEL
    engine: str = "torch"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    # the torch engine's device: auto (the first GPU torch sees, else the CPU), cpu, cuda or cuda:N
    device: str = "auto"
    num_threads: int | None = None
    max_context: int | None = None

    max_tokens_limit: int = Field(1024, gt=0)
    default_max_tokens: int = Field(256, gt=0)
    max_body_bytes: int = Field(4_000_000, gt=0)
    # request body limit of document uploads (POST /v1/collections/{name}/documents)
    max_upload_bytes: int = Field(64_000_000, gt=0)
    max_documents: int = Field(64, gt=0)
    max_document_chars: int = Field(200_000, gt=0)
    max_query_chars: int = Field(20_000, gt=0)
    max_stop_strings: int = Field(8, gt=0)
    queue_size: int = Field(32, ge=0)
    # continuous batching: sequences decoded together (0: one request at a time, unbatched), and the
    # prefill work done per scheduler step, in tokens through the whole model
    max_batch_size: int = Field(8, ge=0)
    prefill_chunk_tokens: int = Field(64, gt=0)
    request_timeout_s: float = Field(300.0, gt=0)
    # --- vLLM backend (RAGBLEND_ENGINE=vllm, the `vllm` extra) ---
    # paged KV cache in GiB (host memory on CPU), or the GPU memory share vLLM may take
    vllm_kv_cache_gib: int = Field(1, ge=1)
    vllm_gpu_memory_utilization: float = Field(0.5, gt=0, le=1)
    vllm_prefix_caching: bool = True  # vLLM's own prefix caching (what mode `prefix` then uses)
    vllm_enforce_eager: bool = True  # no graph compilation: start-up in seconds, not minutes
    vllm_max_num_seqs: int = Field(16, ge=1)
    vllm_reserved_cpus: int = Field(0, ge=0)  # cores vLLM keeps off its CPU worker
    vllm_start_timeout_s: float = Field(600.0, gt=0)
    vllm_blend_in_worker: bool = True  # blend in vLLM's worker on its weights (false: a copy here)
    vllm_worker_in_core: bool = True  # vLLM's worker in its engine-core process (false: its own)
    # --- end vLLM backend ---
    # --- blend correctness gate at model load (engine/blend/gate.py): the default mode must lose at
    # most this many nats/token of the full prefill's answer on the shipped prompts, else its ratio is
    # raised or the default falls back to full; off: the default is taken as is ---
    blend_gate: bool = True
    blend_gate_max_drop: float = Field(0.03, ge=0)
    log_level: str = "info"
    log_format: Literal["json", "text"] = "json"

    # --- gateway: API keys (a JSON list of {name, sha256, tenant, requests_per_minute?, max_streams?}),
    # the secret tenants' cache salts are derived with (default: one kept in the data dir), tracing ---
    api_keys: list[ApiKeySpec] = Field(default_factory=list)
    tenant_secret: SecretStr | None = None
    otlp_traces_endpoint: str | None = None
    # --- end gateway ---

    # Chunk-KV store: process memory, then Redis (when a URL is set), then local disk.
    kv_memory_bytes: int = Field(2 << 30, ge=0)
    redis_url: str | None = None
    kv_redis_bytes: int = Field(0, ge=0, description="set Redis maxmemory (0: leave the server's setting)")
    kv_redis_ttl_s: int | None = Field(7 * 24 * 3600, gt=0)
    kv_disk: bool = True
    kv_disk_bytes: int = Field(20 << 30, ge=0)
    kv_compression: Literal["none", "lz4", "zstd"] = "none"
    kv_quantize: bool = False
    kv_eviction: Literal["lru", "craft"] = "lru"
    # Redis and disk entries carry tags made with a key derived from the tenant secret; an entry
    # without a valid one (forged, or from a replica with another secret) is a miss
    kv_authenticate: bool = True
    # also encrypt the K/V of Redis and disk entries under that key (needs kv_authenticate)
    kv_encrypt: bool = False
    # bytes each tenant is guaranteed in each tier: another tenant's writes never evict it below
    # that (0: no quotas); the Redis quota needs kv_redis_bytes
    kv_memory_tenant_bytes: int = Field(0, ge=0)
    kv_redis_tenant_bytes: int = Field(0, ge=0)
    kv_disk_tenant_bytes: int = Field(0, ge=0)

    # --- retrieval ---
    # collections and ingestion jobs in Postgres with pgvector (postgresql://user:pass@host/db), shared
    # by every replica; unset: SQLite + FAISS under data_dir/collections, for this one process
    database_url: SecretStr | None = None
    database_pool_size: int = Field(8, gt=0)
    # a sentence-transformers model directory; unset: the packaged all-MiniLM-L6-v2
    retrieval_embedder_dir: Path | None = None
    retrieval_max_document_chars: int = Field(1_000_000, gt=0)
    retrieval_max_documents_per_request: int = Field(64, gt=0)
    # uploaded files: bytes per file (the whole request is also held to max_upload_bytes), pages per
    # PDF, and OCR of pages without a text layer when tesseract is installed (seconds per page, and
    # pages per file: the upload waits for its OCR)
    retrieval_max_file_bytes: int = Field(20_000_000, gt=0)
    retrieval_max_pdf_pages: int = Field(500, gt=0)
    retrieval_ocr: bool = True
    retrieval_ocr_timeout_s: float = Field(120.0, gt=0)
    retrieval_max_ocr_pages: int = Field(10, ge=0)
    retrieval_max_top_k: int = Field(50, gt=0)
    retrieval_job_history: int = Field(1000, gt=0)
    # a job's worker renews its lease every third of this; a job whose worker died is taken over once
    # it runs out. Idle workers look for stored jobs every poll interval.
    retrieval_job_lease_s: float = Field(30.0, gt=0)
    retrieval_job_poll_s: float = Field(1.0, gt=0)
    # ingestion jobs one tenant may have queued or running at once (across replicas sharing the
    # store); an upload past it gets 429 with this Retry-After and nothing is stored. Workers take
    # tenants in turn (the one served least recently first), so a flood only delays its own tenant.
    retrieval_max_jobs_per_tenant: int = Field(32, ge=1, le=1_000_000)
    retrieval_queue_retry_after_s: int = Field(10, ge=1, le=3600)
    # how long an ingestion job waits for the model to finish loading before it fails
    retrieval_lm_wait_s: float = Field(600.0, gt=0)
    # compute and store each ingested chunk's KV cache, so first questions find it warm
    retrieval_precompute_kv: bool = True
    # chunks retrieved for /generate when a collection is given without top_k
    retrieval_default_top_k: int = Field(5, gt=0)
    # candidates retrieved for chunk selection when a request gives a selection without top_k
    retrieval_selection_candidates: int = Field(12, gt=0)
    # chunk selection's own threads (searches run up to time_cap_ms), and searches queued behind
    # them; past both a request with a selection gets 503 with Retry-After
    selection_workers: int = Field(2, ge=1, le=64)
    selection_waiting: int = Field(8, ge=0, le=1024)
    # --- end retrieval ---

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return check_device_name(value)

    @field_validator("kv_encrypt")
    @classmethod
    def _encrypt_needs_authenticate(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("kv_authenticate", True):
            raise ValueError("RAGBLEND_KV_ENCRYPT needs RAGBLEND_KV_AUTHENTICATE=true (its key)")
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_url_is_none(cls, value: object) -> object:
        # RAGBLEND_DATABASE_URL= (set but empty, as compose passes an unset variable) means the default
        return None if value == "" else value

    def model_dir(self) -> Path:
        """Directory of the model weights, converting the embedded model on first use."""
        return resolve_model(self.model, self.data_dir)

    def store_config(self) -> StoreConfig:
        return StoreConfig(
            memory_bytes=self.kv_memory_bytes,
            redis_url=self.redis_url,
            redis_bytes=self.kv_redis_bytes,
            redis_ttl_s=self.kv_redis_ttl_s,
            disk_dir=str(self.data_dir / "kv") if self.kv_disk and self.kv_disk_bytes else None,
            disk_bytes=self.kv_disk_bytes,
            compression=self.kv_compression,
            quantize=self.kv_quantize,
            eviction=self.kv_eviction,
            entry_secret=self.entry_secret() if self.kv_authenticate else None,
            encrypt_entries=self.kv_encrypt,
            memory_tenant_bytes=self.kv_memory_tenant_bytes,
            redis_tenant_bytes=self.kv_redis_tenant_bytes,
            disk_tenant_bytes=self.kv_disk_tenant_bytes,
        )

    def entry_secret(self) -> bytes:
        """What chunk-cache entries are authenticated with: the tenant secret (configured, or the
        one generated once into the data dir), so replicas that share it share their caches."""
        configured = self.tenant_secret.get_secret_value() if self.tenant_secret else None
        return load_tenant_secret(configured, self.data_dir)

    def torch_device(self) -> torch.device:
        """The device RAGBLEND_DEVICE names here (ValueError for a GPU that is asked for but absent)."""
        return resolve_device(self.device)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            model_dir=self.model_dir(),
            dtype=remembered_dtype(self.dtype, self.data_dir / "dtype-choice.json", self.torch_device()),
            device=self.device,
            num_threads=self.num_threads,
            max_context=self.max_context,
            max_new_tokens_limit=self.max_tokens_limit,
            max_batch_size=self.max_batch_size,
            queue_size=self.queue_size,
            prefill_chunk_tokens=self.prefill_chunk_tokens,
            vllm=VllmOptions(
                kv_cache_gib=self.vllm_kv_cache_gib,
                gpu_memory_utilization=self.vllm_gpu_memory_utilization,
                prefix_caching=self.vllm_prefix_caching,
                enforce_eager=self.vllm_enforce_eager,
                max_num_seqs=self.vllm_max_num_seqs,
                reserved_cpus=self.vllm_reserved_cpus,
                start_timeout_s=self.vllm_start_timeout_s,
                blend_in_worker=self.vllm_blend_in_worker,
                worker_in_core=self.vllm_worker_in_core,
            ),
            blend_gate=GateConfig(enabled=self.blend_gate, max_drop=self.blend_gate_max_drop),
        )
