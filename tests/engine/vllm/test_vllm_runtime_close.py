"""Closing the vLLM runtime never leaves a caller waiting on its stopped loop."""

from __future__ import annotations

import asyncio
import inspect
from concurrent.futures import CancelledError
from typing import Any

import pytest

from engine.vllm.options import VllmOptions

pytestmark = pytest.mark.vllm


def test_a_call_pending_at_close_is_cancelled_and_later_calls_fail_at_once() -> None:
    from engine.vllm.runtime import VllmRuntime  # vllm is installed in the vLLM test run only

    class LoopOnly(VllmRuntime):
        """The runtime's client loop and thread, without starting a vLLM engine on it."""

        async def _start(self, args: Any) -> Any:
            return None

    runtime = LoopOnly(None, VllmOptions())
    never = asyncio.Event()
    pending = runtime.call(never.wait())
    assert runtime.call(asyncio.sleep(0, result="ok")).result(5) == "ok"
    runtime.close()
    with pytest.raises(CancelledError):
        pending.result(5)
    coro = asyncio.sleep(0, result=None)
    with pytest.raises(RuntimeError, match="not running"):
        runtime.call(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # no never-awaited warning
