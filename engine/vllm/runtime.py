"""vLLM's async engine, started and owned by the backend, on an event loop of its own thread.

vLLM runs its engine core (scheduler, our connector's scheduler side) and its worker (the model, our
connector's worker side) in child processes; this object is the client side in the serving process.
Start-up blocks until vLLM is ready (the backend is not ready before), and `failure` reports a vLLM
that died, so the server can refuse requests with a 503 instead of waiting on a dead engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar, cast

from vllm.config import KVTransferConfig
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.inputs import TokensPrompt
from vllm.outputs import RequestOutput
from vllm.sampling_params import SamplingParams as VllmSamplingParams
from vllm.v1.engine.async_llm import AsyncLLM

from engine.vllm.options import VllmOptions

T = TypeVar("T")


def engine_args(
    model_dir: Path, dtype: str, max_context: int, options: VllmOptions, handoff_dir: str | None
) -> AsyncEngineArgs:
    """vLLM's arguments; with `handoff_dir`, our KV connector and our worker extension
    (engine/vllm/worker_ext.py) are loaded from this package."""
    transfer = None
    extension = ""
    if handoff_dir is not None:
        extension = "engine.vllm.worker_ext.RagblendWorkerExtension"
        transfer = KVTransferConfig(
            kv_connector="RagblendConnector",
            kv_connector_module_path="engine.vllm.connector",
            kv_role="kv_both",
            kv_load_failure_policy="recompute",
            kv_connector_extra_config={"handoff_dir": handoff_dir},
        )
    return AsyncEngineArgs(
        model=str(model_dir),
        dtype=cast(Any, dtype),  # one of DTYPES' names, all of which vLLM accepts
        max_model_len=max_context,
        enforce_eager=options.enforce_eager,
        enable_prefix_caching=options.prefix_caching,
        max_num_seqs=options.max_num_seqs,
        gpu_memory_utilization=options.gpu_memory_utilization,
        kv_transfer_config=transfer,
        worker_extension_cls=extension,
        distributed_executor_backend="uni" if options.worker_in_core else None,
        disable_log_stats=True,
        seed=0,
    )


def export_cpu_settings(options: VllmOptions) -> None:
    """vLLM's CPU platform reads these from the environment of its processes (inherited by them)."""
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(options.kv_cache_gib)
    os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(options.reserved_cpus)


class VllmRuntime:
    def __init__(self, args: AsyncEngineArgs, options: VllmOptions) -> None:
        export_cpu_settings(options)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="vllm-client", daemon=True)
        self._thread.start()
        self.llm: AsyncLLM | None = None
        self._closing = False
        self._pending: set[Future[Any]] = set()  # calls not answered yet (cancelled by close)
        self._lock = threading.Lock()
        try:
            self.llm = self.call(self._start(args)).result(timeout=options.start_timeout_s)
        except BaseException:
            self.close()
            raise

    async def _start(self, args: AsyncEngineArgs) -> AsyncLLM:
        return AsyncLLM.from_engine_args(args)

    def call(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run `coro` on the client loop from any thread. Once closing, it raises at once; a call the
        loop never ran is cancelled by `close`, so no caller waits on a stopped loop."""
        with self._lock:
            if self._closing:
                coro.close()
                raise RuntimeError("the vLLM engine is not running")
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
            self._pending.add(future)
        future.add_done_callback(self._answered)
        return future

    def _answered(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def failure(self) -> str | None:
        """Why vLLM cannot serve (it died or was closed), or None while it can."""
        if self.llm is None or not self._thread.is_alive():
            return "the vLLM engine is not running"
        if self.llm.errored:
            return f"the vLLM engine died: {self.llm.dead_error}"
        return None

    async def generate(
        self, request_id: str, prompt: dict[str, Any], params: VllmSamplingParams
    ) -> AsyncIterator[RequestOutput]:
        assert self.llm is not None
        async for out in self.llm.generate(cast(TokensPrompt, prompt), params, request_id):
            yield out

    async def rpc(self, method: str, *args: Any) -> list[Any]:
        """Call `method` of our worker extension on every worker; one result per worker."""
        assert self.llm is not None
        return cast(list[Any], await self.llm.collective_rpc(method, args=args))

    async def abort(self, request_id: str) -> None:
        if self.llm is not None and not self.llm.errored:
            await self.llm.abort(request_id)

    def close(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):  # shutting down goes on whatever vLLM says
                self.call(self._stop()).result(timeout=60)
        with self._lock:
            self._closing = True
            left = list(self._pending)
        self.llm = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        for future in left:
            future.cancel()

    async def _stop(self) -> None:
        """Stop vLLM from its own loop, then let its client tasks finish their cancellation there."""
        if self.llm is not None:
            self.llm.shutdown()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
