"""The official `openai` client against a real uvicorn process with API keys configured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from server.api_keys import hash_key
from tests.e2e.server_process import running_server

KEY, OTHER_TENANT_KEY = "sk-e2e-key-0001", "sk-e2e-key-0002"
DOCS = [
    "The Amazon River in South America is the largest river by discharge volume of water in the world.",
    "The Nile is a major north-flowing river in northeastern Africa, flowing into the Mediterranean Sea.",
]
QUESTION = "Which river flows into the Mediterranean Sea?"


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("openai")
    keys = [
        {"name": "e2e", "sha256": hash_key(KEY), "tenant": "acme"},
        {"name": "other", "sha256": hash_key(OTHER_TENANT_KEY), "tenant": "globex"},
    ]
    env = {
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DATA_DIR": str(tmp),
        "RAGBLEND_NUM_THREADS": "2",
        "RAGBLEND_MAX_TOKENS_LIMIT": "64",
        "RAGBLEND_API_KEYS": json.dumps(keys),
        "RAGBLEND_KV_DISK": "false",
    }
    log = tmp / "server.log"
    with running_server(env, log) as base:
        yield base, log


@pytest.fixture()
def client(server: tuple[str, Path]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY, max_retries=0, timeout=120)


def _model(client: openai.OpenAI) -> str:
    models = client.models.list().data
    assert len(models) == 1
    return models[0].id


def test_chat_whole_and_streamed_agree_with_usage(client: openai.OpenAI) -> None:
    model = _model(client)
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION}]
    extra = {"documents": DOCS}
    whole = client.chat.completions.create(
        model=model, messages=messages, max_tokens=8, temperature=0, extra_body=extra
    )
    text = whole.choices[0].message.content
    assert text and whole.choices[0].finish_reason in {"stop", "length"}
    assert whole.usage is not None and whole.usage.prompt_tokens > 40
    assert whole.usage.prompt_tokens_details is not None
    first_cached = whole.usage.prompt_tokens_details.cached_tokens

    # The documents' caches are stored after the first answer; the same question, streamed, finds them
    # (the store may take a request or two to have them: writes never delay an answer).
    cached = []
    for _ in range(3):
        stream = client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=extra,
        )
        chunks = list(stream)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens
        assert usage.prompt_tokens == whole.usage.prompt_tokens
        assert usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens is not None
        cached.append(usage.prompt_tokens_details.cached_tokens)
        if cached[-1] == 0:
            assert streamed == text  # nothing reused yet: the very same computation
        else:
            assert streamed.strip()
            break
    assert first_cached == 0 and cached[-1] > 0, cached


def test_text_completion(client: openai.OpenAI) -> None:
    done = client.completions.create(
        model=_model(client), prompt="One, two, three,", max_tokens=4, temperature=0
    )
    assert done.choices[0].text and done.usage is not None and done.usage.completion_tokens >= 1
    streamed = client.completions.create(
        model=_model(client), prompt="One, two, three,", max_tokens=4, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == done.choices[0].text


def test_client_errors_are_typed(server: tuple[str, Path], client: openai.OpenAI) -> None:
    bad = openai.OpenAI(base_url=f"{server[0]}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=_model(client), messages=[{"role": "user", "content": "hi"}], max_tokens=5000
        )
    assert "cap of 64" in info.value.message
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])


def test_request_id_is_echoed_and_in_the_json_log(server: tuple[str, Path]) -> None:
    base, log = server
    headers = {"Authorization": f"Bearer {KEY}", "X-Request-ID": "e2e-request-7"}
    r = httpx.get(f"{base}/v1/models", headers=headers, timeout=30)
    assert r.status_code == 200 and r.headers["x-request-id"] == "e2e-request-7"
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    mine = [x for x in lines if x.get("request_id") == "e2e-request-7"]
    assert mine and mine[0]["status"] == 200 and mine[0]["tenant"] == "acme" and mine[0]["api_key"] == "e2e"


def test_metrics_need_a_key_and_show_the_serving_metrics(server: tuple[str, Path]) -> None:
    base, _ = server
    assert httpx.get(f"{base}/metrics", timeout=30).status_code == 401
    assert httpx.get(f"{base}/health", timeout=30).status_code == 200
    text = httpx.get(f"{base}/metrics", headers={"X-API-Key": KEY}, timeout=30).text
    for name in (
        "ragblend_http_requests_total",
        "ragblend_time_to_first_token_seconds",
        "ragblend_inter_token_latency_seconds",
        "ragblend_cached_prompt_tokens_total",
        "ragblend_queue_depth",
        "ragblend_kv_",
    ):
        assert name in text, name
