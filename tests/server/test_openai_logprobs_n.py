"""Log-probabilities, prompt scoring (echo) and n > 1 on the OpenAI routes, in process."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.gateway_helpers import chat
from tests.server.test_openai_routes import stream_payloads

DOCS = ["The Nile flows north through Africa into the Mediterranean Sea.", "Everest is in the Himalayas."]


def test_chat_logprobs_whole_and_streamed_agree(client: TestClient) -> None:
    request = chat("Name a colour.", max_tokens=6, logprobs=True, top_logprobs=2)
    whole = client.post("/v1/chat/completions", json=request)
    assert whole.status_code == 200, whole.text
    choice = whole.json()["choices"][0]
    content = choice["logprobs"]["content"]
    assert len(content) == whole.json()["usage"]["completion_tokens"]
    assert "".join(c["token"] for c in content) == choice["message"]["content"]
    for c in content:
        assert c["logprob"] <= 0 and len(c["top_logprobs"]) == 2
        assert c["top_logprobs"][0]["token"] == c["token"]  # greedy: the chosen token is the best
        assert bytes(c["bytes"]).decode("utf-8", "replace") == c["token"]
    chunks = stream_payloads(client.post("/v1/chat/completions", json={**request, "stream": True}).text)
    streamed = [e for ch in chunks for e in ((ch["choices"][0].get("logprobs") or {}).get("content") or [])]
    assert [e["token"] for e in streamed] == [c["token"] for c in content]
    assert all(
        math.isclose(a["logprob"], b["logprob"], abs_tol=1e-4) for a, b in zip(streamed, content, strict=True)
    )
    plain = client.post("/v1/chat/completions", json=chat("Name a colour.")).json()
    assert plain["choices"][0]["logprobs"] is None


def test_completion_logprobs_have_offsets(client: TestClient) -> None:
    r = client.post(
        "/v1/completions",
        json={
            "prompt": "One, two, three,",
            "max_tokens": 5,
            "temperature": 0,
            "logprobs": 1,
            "repetition_penalty": 1.0,
        },
    )
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    lp = choice["logprobs"]
    assert "".join(lp["tokens"]) == choice["text"]
    assert lp["text_offset"][0] == 0 and lp["text_offset"] == sorted(lp["text_offset"])
    assert all(len(t) == 1 for t in lp["top_logprobs"]) and all(x <= 0 for x in lp["token_logprobs"])


def test_echo_scores_the_prompt_like_the_generation(client: TestClient) -> None:
    prompt = "One, two, three,"
    gen = client.post(
        "/v1/completions", json={"prompt": prompt, "max_tokens": 4, "temperature": 0, "logprobs": 0}
    )
    answer = gen.json()["choices"][0]
    scored = client.post(
        "/v1/completions",
        json={"prompt": prompt + answer["text"], "max_tokens": 0, "echo": True, "logprobs": 0},
    )
    assert scored.status_code == 200, scored.text
    body = scored.json()
    lp = body["choices"][0]["logprobs"]
    assert body["choices"][0]["text"] == prompt + answer["text"]
    assert lp["token_logprobs"][0] is None and body["usage"]["completion_tokens"] == 0
    n = len(answer["logprobs"]["token_logprobs"])
    tail = lp["token_logprobs"][-n:]
    # the same tokens when the answer re-tokenizes the same way; then the same log-probabilities
    if lp["tokens"][-n:] == answer["logprobs"]["tokens"]:
        assert all(
            math.isclose(a, b, abs_tol=1e-3)
            for a, b in zip(tail, answer["logprobs"]["token_logprobs"], strict=True)
        )
    assert all(x is not None and x <= 0 for x in lp["token_logprobs"][1:])


def test_echo_under_each_blend_mode(client: TestClient) -> None:
    text = "Question: Where does the Nile flow?<|im_end|>\n<|im_start|>assistant\nInto the Mediterranean Sea."
    sums = {}
    for mode in ("full", "reuse", "reuse", "cacheblend"):
        r = client.post(
            "/v1/completions",
            json={
                "prompt": text,
                "max_tokens": 0,
                "echo": True,
                "logprobs": 0,
                "documents": DOCS,
                "blend": {"mode": mode},
            },
        )
        assert r.status_code == 200, r.text
        lp = r.json()["choices"][0]["logprobs"]
        answer = [
            x
            for x, o in zip(lp["token_logprobs"], lp["text_offset"], strict=True)
            if o >= len(r.json()["choices"][0]["text"]) - 27
        ]
        assert answer and all(x is not None for x in answer)
        sums[mode] = sum(answer)
        if mode == "full":
            assert all(x is not None for x in lp["token_logprobs"][1:])
        else:
            assert lp["token_logprobs"][1] is None  # a cached piece's token: never predicted
    assert all(v < 0 for v in sums.values()) and len(set(sums.values())) >= 2, sums


def test_n_choices_whole_and_streamed(client: TestClient) -> None:
    request = chat("Name a colour.", max_tokens=5, n=3, temperature=1.0, seed=11)
    whole = client.post("/v1/chat/completions", json=request)
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["usage"]["completion_tokens"] >= 3
    again = client.post("/v1/chat/completions", json=request).json()
    assert [c["message"]["content"] for c in again["choices"]] == [
        c["message"]["content"] for c in body["choices"]
    ]
    chunks = stream_payloads(
        client.post(
            "/v1/chat/completions",
            json={**request, "stream": True, "stream_options": {"include_usage": True}},
        ).text
    )
    texts = ["", "", ""]
    for ch in chunks:
        for c in ch["choices"]:
            texts[c["index"]] += c["delta"].get("content", "")
    assert texts == [c["message"]["content"] for c in body["choices"]]
    assert sum(1 for ch in chunks for c in ch["choices"] if c["finish_reason"]) == 3
    assert chunks[-1]["usage"]["completion_tokens"] == body["usage"]["completion_tokens"]
    greedy = client.post(
        "/v1/completions", json={"prompt": "A, B,", "max_tokens": 3, "temperature": 0, "n": 2}
    ).json()
    assert greedy["choices"][0]["text"] == greedy["choices"][1]["text"]


def test_echo_with_a_generation_repeats_the_prompt_first(client: TestClient) -> None:
    prompt = "One, two, three,"
    base = {"prompt": prompt, "max_tokens": 5, "temperature": 0}
    generated = client.post("/v1/completions", json=base).json()["choices"][0]["text"]
    scored = client.post("/v1/completions", json={**base, "max_tokens": 0, "echo": True, "logprobs": 1})
    prompt_text = scored.json()["choices"][0]["text"]
    prompt_lp = scored.json()["choices"][0]["logprobs"]
    assert prompt in prompt_text
    r = client.post("/v1/completions", json={**base, "echo": True, "logprobs": 1})
    assert r.status_code == 200, r.text
    choice, usage = r.json()["choices"][0], r.json()["usage"]
    assert choice["text"] == prompt_text + generated
    lp = choice["logprobs"]
    assert "".join(lp["tokens"]) == choice["text"]
    assert len(lp["tokens"]) == usage["prompt_tokens"] + usage["completion_tokens"]
    assert lp["text_offset"] == [sum(len(t) for t in lp["tokens"][:i]) for i in range(len(lp["tokens"]))]
    k = usage["prompt_tokens"]
    assert lp["tokens"][:k] == prompt_lp["tokens"] and lp["token_logprobs"][0] is None
    assert all(
        math.isclose(a, b, abs_tol=1e-4)
        for a, b in zip(lp["token_logprobs"][1:k], prompt_lp["token_logprobs"][1:], strict=True)
    )
    assert all(x is not None and x <= 0 for x in lp["token_logprobs"][k:])
    plain = client.post("/v1/completions", json={**base, "echo": True, "n": 2}).json()
    assert [c["text"] for c in plain["choices"]] == [prompt_text + generated] * 2
    assert all(c["logprobs"] is None for c in plain["choices"])
    chunks = stream_payloads(
        client.post("/v1/completions", json={**base, "echo": True, "logprobs": 1, "stream": True}).text
    )
    assert chunks[0]["choices"][0]["text"] == prompt_text  # the prompt comes first, with its scores
    assert chunks[0]["choices"][0]["logprobs"]["tokens"] == prompt_lp["tokens"]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == choice["text"]
    offsets = [
        o
        for c in chunks
        if c["choices"] and c["choices"][0]["logprobs"]
        for o in c["choices"][0]["logprobs"]["text_offset"]
    ]
    assert offsets == lp["text_offset"]


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v1/chat/completions", chat("hi", top_logprobs=2), "only allowed with logprobs"),
        ("/v1/chat/completions", chat("hi", logprobs=True, top_logprobs=21), "top_logprobs"),
        ("/v1/chat/completions", chat("hi", n=17), "n"),
        ("/v1/chat/completions", chat("hi", n=0), "n"),
        ("/v1/completions", {"prompt": "a", "max_tokens": 0}, "only with echo"),
        ("/v1/completions", {"prompt": "a", "max_tokens": 0, "echo": True, "n": 2}, "one choice"),
        ("/v1/completions", {"prompt": "a", "logprobs": 30}, "logprobs"),
        ("/v1/completions", {"prompt": "a", "documents": [" "]}, "documents.0"),
        ("/v1/completions", {"prompt": "a", "blend": {"mode": "nope"}}, "blend"),
        ("/v1/completions", {"prompt": "a", "repetition_penalty": 1.2}, "penalties"),
        ("/v1/completions", {"prompt": "a", "min_tokens": 3}, "min_tokens"),
    ],
)
def test_bad_options_are_clear_400s(client: TestClient, path: str, body: dict[str, Any], needle: str) -> None:
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"], r.text


def test_ignore_eos_decodes_up_to_max_tokens(client: TestClient) -> None:
    body = {"prompt": "Hi<|im_end|>", "max_tokens": 12, "temperature": 0, "ignore_eos": True}
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    assert (
        r.json()["usage"]["completion_tokens"] == 12 and r.json()["choices"][0]["finish_reason"] == "length"
    )


def test_the_blend_temperature_reaches_the_blend(client: TestClient) -> None:
    """`blend.temperature` sets the reuse temperature of the request's blend: the same value scores
    the answer the same, another value differently (the moved rows' attention changes)."""
    text = "Question: Where does the Nile flow?<|im_end|>\n<|im_start|>assistant\nInto the Mediterranean Sea."

    def answer_logprob(blend: dict[str, Any]) -> float:
        body = {"prompt": text, "max_tokens": 0, "echo": True, "logprobs": 0, "documents": DOCS[::-1]}
        r = client.post("/v1/completions", json={**body, "blend": blend})
        assert r.status_code == 200, r.text
        lp = r.json()["choices"][0]["logprobs"]
        return sum(x for x in lp["token_logprobs"][-6:])

    answer_logprob({"mode": "reuse"})  # the pieces are stored
    probe = {"mode": "probe", "ratio": 0.15}
    one = answer_logprob({**probe, "temperature": 1.0})
    assert answer_logprob({**probe, "temperature": 1.0}) == pytest.approx(one, abs=1e-6)
    assert answer_logprob({**probe, "temperature": 2.0}) != pytest.approx(one, abs=1e-3)
    bad = {"prompt": "a", "blend": {"mode": "cacheblend", "temperature": 1.5}}
    r = client.post("/v1/completions", json=bad)
    assert r.status_code in (400, 422) and "temperature" in r.json()["error"]["message"]
