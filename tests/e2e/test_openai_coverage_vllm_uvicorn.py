"""The OpenAI coverage tests that hold on any backend, against a real uvicorn on RAGBLEND_ENGINE=vllm:
logprobs, `n` > 1 (sequence i as seed + i), echo with a generation, tools refused, /tokenize."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.api_keys import hash_key
from tests.e2e.server_process import running_server
from tests.e2e.test_openai_coverage_uvicorn import (  # the same tests, on this module's server
    KEY,
    client,
    test_chat_logprobs_whole_and_streamed,
    test_echo_with_a_generation,
    test_n_choices,
    test_n_seeded_sequence_i_answers_as_seed_plus_i,
    test_tokenize_counts_what_chat_sends,
    test_tools_on_a_template_without_them_are_a_clear_400,
)

pytestmark = pytest.mark.vllm

__all__ = [
    "client",
    "test_chat_logprobs_whole_and_streamed",
    "test_echo_with_a_generation",
    "test_n_choices",
    "test_n_seeded_sequence_i_answers_as_seed_plus_i",
    "test_tokenize_counts_what_chat_sends",
    "test_tools_on_a_template_without_them_are_a_clear_400",
]


@pytest.fixture(scope="module")
def base(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("coverage-vllm")
    env = {
        "RAGBLEND_ENGINE": "vllm",
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DATA_DIR": str(tmp),
        "RAGBLEND_NUM_THREADS": "2",
        "RAGBLEND_MAX_CONTEXT": "2048",
        "RAGBLEND_MAX_TOKENS_LIMIT": "32",
        "RAGBLEND_KV_DISK": "false",
        "RAGBLEND_VLLM_KV_CACHE_GIB": "1",
        "RAGBLEND_API_KEYS": json.dumps([{"name": "cov", "sha256": hash_key(KEY), "tenant": "acme"}]),
    }
    with running_server(env, tmp / "server.log", ready_timeout=600) as url:
        yield url
