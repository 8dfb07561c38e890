"""The official `openai` client against a real uvicorn process: embeddings, logprobs, prompt scoring
under blend modes, n > 1, tools refused on a template without them, and /tokenize."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from server.api_keys import hash_key
from tests.e2e.server_process import running_server

KEY = "sk-coverage-0001"
DOCS = [
    "The Amazon River in South America is the largest river by discharge volume of water in the world.",
    "The Nile is a major north-flowing river in northeastern Africa, flowing into the Mediterranean Sea.",
]


@pytest.fixture(scope="module")
def base(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("coverage")
    env = {
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DATA_DIR": str(tmp),
        "RAGBLEND_NUM_THREADS": "2",
        "RAGBLEND_MAX_TOKENS_LIMIT": "32",
        "RAGBLEND_API_KEYS": json.dumps([{"name": "cov", "sha256": hash_key(KEY), "tenant": "acme"}]),
        "RAGBLEND_KV_DISK": "false",
        "RAGBLEND_BLEND_GATE": "false",
    }
    with running_server(env, tmp / "server.log") as url:
        yield url


@pytest.fixture()
def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=180)


def _model(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


def test_embeddings_float_and_base64(client: openai.OpenAI) -> None:
    # the client asks for base64 by default and decodes it; float is asked for explicitly
    packed = client.embeddings.create(model=_model(client), input=DOCS)
    floats = client.embeddings.create(model=_model(client), input=DOCS, encoding_format="float")
    a = np.array([d.embedding for d in packed.data])
    b = np.array([d.embedding for d in floats.data])
    assert a.shape == (2, 384) and np.allclose(a, b, atol=1e-6)
    assert packed.usage.prompt_tokens > 20
    one = client.embeddings.create(model=packed.model, input="Which river is the largest?")
    scores = a @ np.array(one.data[0].embedding)
    assert scores[0] > scores[1]  # the Amazon passage answers it
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=_model(client), input="")


def test_chat_logprobs_whole_and_streamed(client: openai.OpenAI) -> None:
    kwargs = {"model": _model(client), "max_tokens": 6, "temperature": 0, "logprobs": True, "top_logprobs": 3}
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Say hi."}]
    whole = client.chat.completions.create(messages=messages, **kwargs)  # type: ignore[call-overload]
    content = whole.choices[0].logprobs.content
    assert content and "".join(t.token for t in content) == whole.choices[0].message.content
    assert all(len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token for t in content)
    stream = client.chat.completions.create(messages=messages, stream=True, **kwargs)  # type: ignore[call-overload]
    streamed = [
        t for c in stream if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content
    ]
    assert [t.token for t in streamed] == [t.token for t in content]
    assert all(abs(a.logprob - b.logprob) < 1e-4 for a, b in zip(streamed, content, strict=True))


def test_completion_logprobs_and_scoring_under_blend_modes(client: openai.OpenAI) -> None:
    model = _model(client)
    done = client.completions.create(
        model=model, prompt="One, two, three,", max_tokens=4, temperature=0, logprobs=2
    )
    lp = done.choices[0].logprobs
    assert lp is not None and "".join(lp.tokens or []) == done.choices[0].text
    answer = " Into the Mediterranean Sea."
    prompt = "Question: Where does the Nile flow?<|im_end|>\n<|im_start|>assistant\n" + answer.strip()
    likelihood = {}
    for mode in ("full", "cacheblend", "reuse"):
        scored = client.completions.create(
            model=model,
            prompt=prompt,
            max_tokens=0,
            echo=True,
            logprobs=0,
            extra_body={"documents": DOCS, "blend": {"mode": mode, "ratio": 0.2}},
        )
        choice = scored.choices[0]
        assert scored.usage is not None and scored.usage.completion_tokens == 0
        assert choice.text.endswith(answer.strip())
        slp = choice.logprobs
        assert slp is not None and slp.token_logprobs is not None and slp.text_offset is not None
        start = len(choice.text) - len(answer.strip())
        tail = [x for x, o in zip(slp.token_logprobs, slp.text_offset, strict=True) if o >= start]
        assert tail and all(x is not None and x < 0 for x in tail)
        likelihood[mode] = sum(tail)
    assert len(set(likelihood.values())) >= 2, likelihood


def test_n_choices(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=_model(client),
        messages=[{"role": "user", "content": "Name a fruit."}],
        max_tokens=5,
        n=3,
        temperature=1.0,
        seed=3,
    )
    assert [c.index for c in r.choices] == [0, 1, 2] and all(c.message.content for c in r.choices)
    stream = client.completions.create(
        model=_model(client), prompt="Colours:", max_tokens=4, n=2, seed=5, stream=True
    )
    indices = {c.choices[0].index for c in stream if c.choices}
    assert indices == {0, 1}


def test_tools_on_a_template_without_them_are_a_clear_400(client: openai.OpenAI) -> None:
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=_model(client),
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[tool],  # type: ignore[list-item]
        )
    assert "tools" in info.value.message and "template" in info.value.message


def test_tokenize_counts_what_chat_sends(base: str, client: openai.OpenAI) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    messages = [{"role": "user", "content": "Say hi."}]
    counted = httpx.post(f"{base}/tokenize", json={"messages": messages}, headers=headers, timeout=60).json()
    r = client.chat.completions.create(model=_model(client), messages=messages, max_tokens=2)  # type: ignore[arg-type]
    assert r.usage is not None and counted["count"] == r.usage.prompt_tokens
    back = httpx.post(f"{base}/detokenize", json={"tokens": counted["tokens"]}, headers=headers, timeout=60)
    assert "Say hi." in back.json()["prompt"]
    assert httpx.post(f"{base}/tokenize", json={"prompt": "x"}, timeout=60).status_code == 401


def _metric(base: str, sample: str) -> float:
    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=60).text
    return float(next(x for x in text.splitlines() if x.startswith(sample + " ")).split()[-1])


def _prefilled(base: str) -> float:
    """The engine's prompt tokens prefilled so far."""
    return _metric(base, "ragblend_engine_prefilled_tokens_total")


COMPLETION_PROMPTS = 'ragblend_prompt_tokens_total{endpoint="/v1/completions"}'


def test_n_sequences_share_one_prefill(base: str, client: openai.OpenAI) -> None:
    model = _model(client)
    prompt = "The three primary colours are"
    one = client.completions.create(model=model, prompt=prompt, max_tokens=6, temperature=0)
    before, served = _prefilled(base), _metric(base, COMPLETION_PROMPTS)
    three = client.completions.create(model=model, prompt=prompt, max_tokens=6, temperature=0, n=3)
    assert three.usage is not None and one.usage is not None
    assert _prefilled(base) - before == three.usage.prompt_tokens  # one prefill for the three
    assert _metric(base, COMPLETION_PROMPTS) - served == three.usage.prompt_tokens
    assert three.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counted once
    assert three.usage.completion_tokens == 3 * one.usage.completion_tokens
    assert [c.text for c in three.choices] == [one.choices[0].text] * 3


def test_n_seeded_sequence_i_answers_as_seed_plus_i(client: openai.OpenAI) -> None:
    prompt = "The three primary colours are"
    sampled = {"model": _model(client), "prompt": prompt, "max_tokens": 6, "temperature": 1.0}
    singles = [client.completions.create(seed=40 + i, **sampled).choices[0].text for i in range(3)]  # type: ignore[call-overload]
    stream = client.completions.create(n=3, seed=40, stream=True, **sampled)  # type: ignore[call-overload]
    texts = ["", "", ""]
    for chunk in stream:
        for c in chunk.choices:
            texts[c.index] += c.text
    assert texts == singles
    whole = client.completions.create(n=3, seed=40, **sampled)  # type: ignore[call-overload]
    assert [c.text for c in whole.choices] == singles


def test_echo_with_a_generation(client: openai.OpenAI) -> None:
    model = _model(client)
    prompt = "One, two, three,"
    plain = client.completions.create(model=model, prompt=prompt, max_tokens=4, temperature=0)
    done = client.completions.create(
        model=model, prompt=prompt, max_tokens=4, temperature=0, echo=True, logprobs=1
    )
    text = done.choices[0].text
    assert text.endswith(prompt + plain.choices[0].text)
    lp = done.choices[0].logprobs
    assert lp is not None and lp.tokens is not None and lp.token_logprobs is not None
    assert "".join(lp.tokens) == text and lp.token_logprobs[0] is None
    assert done.usage is not None and len(lp.tokens) == done.usage.total_tokens
    assert all(x is not None and x <= 0 for x in lp.token_logprobs[1:])
    stream = client.completions.create(
        model=model, prompt=prompt, max_tokens=4, temperature=0, echo=True, stream=True
    )
    chunks = [c.choices[0].text for c in stream if c.choices]
    assert chunks[0].endswith(prompt) and "".join(chunks) == text
