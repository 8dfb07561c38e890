"""The SQuAD workload of the load test: its paragraphs ingested as one collection through the API, its
answerable questions asked against it with `collection` + `top_k`, drawn with Zipf-skewed popularity
so that the chunks of popular questions come back."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from typing import Any

import httpx

from bench.common import DATA
from bench.load_client import Payload

COLLECTION = "load-squad"
BATCH = 32  # documents per ingestion request: a few jobs, none too long


def squad_pool(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The paragraphs to ingest (`args.paragraphs` of them, 0: all) and the answerable questions about
    them (the first `args.pool`, 0: all)."""
    paragraphs: list[str] = []
    asked: list[str] = []
    for article in json.loads((DATA / "squad_v2_dev_subset.json").read_text())["data"]:
        for para in article["paragraphs"]:
            if args.paragraphs and len(paragraphs) >= args.paragraphs:
                break
            paragraphs.append(para["context"])
            asked += [qa["question"] for qa in para["qas"] if not qa["is_impossible"]]
    return paragraphs, asked[: args.pool] if args.pool else asked


async def ingest(client: httpx.AsyncClient, base: str, paragraphs: list[str], timeout_s: float = 900) -> None:
    """Create the collection (or reuse it) and ingest the paragraphs, waiting for every job."""
    r = await client.post(f"{base}/v1/collections", json={"name": COLLECTION})
    if r.status_code == 409:
        return  # already ingested on this server (several modes against one --url)
    r.raise_for_status()
    jobs = []
    for first in range(0, len(paragraphs), BATCH):
        docs = [{"text": t, "name": f"p{first + i}"} for i, t in enumerate(paragraphs[first : first + BATCH])]
        r = await client.post(f"{base}/v1/collections/{COLLECTION}/documents", json={"documents": docs})
        r.raise_for_status()
        jobs.append(r.json()["job_id"])
    deadline = asyncio.get_running_loop().time() + timeout_s
    for job in jobs:
        while True:
            state = (await client.get(f"{base}/v1/jobs/{job}")).json()
            if state["state"] == "succeeded":
                break
            if state["state"] == "failed" or asyncio.get_running_loop().time() > deadline:
                raise SystemExit(f"ingestion job {job} did not succeed: {state}")
            await asyncio.sleep(1.0)


def squad_payloads(asked: list[str], count: int, mode: str, rng: random.Random, args: Any) -> list[Payload]:
    """`count` requests for `mode`, questions drawn with weight 1 / rank^zipf."""
    weights = [1 / (rank + 1) ** args.zipf for rank in range(len(asked))]
    return [
        {"query": q, "collection": COLLECTION, "top_k": args.top_k, "max_tokens": args.max_tokens,
         "blend": {"mode": mode}}
        for q in rng.choices(asked, weights=weights, k=count)
    ]  # fmt: skip
