"""End to end on the real model: chunk caches replaced in the disk tier by forged entries (valid
checksums, right keys and model, other K/V) never reach an answer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from cache import StoreConfig, TieredStore
from cache.codec import decode as decode_entry
from cache.codec import encode
from engine.blend.options import BlendOptions
from engine.config import EngineConfig
from engine.events import FinishEvent, TokenEvent
from engine.prompt import Prompt
from engine.sampling import SamplingParams
from engine.torch_engine import TorchEngine
from tests.texts import rag_docs

SECRET = b"replicas share this secret"
PARAMS = SamplingParams(max_tokens=12)
REUSE = BlendOptions(mode="reuse")


def answer(engine: TorchEngine, prompt: Prompt) -> tuple[list[int], int]:
    events = list(engine.generate_unbatched(prompt, PARAMS, blend=REUSE))
    final = events[-1]
    assert isinstance(final, FinishEvent)
    tokens = [e.token_id for e in events if isinstance(e, TokenEvent) and e.token_id >= 0]
    return tokens, int(final.extra_usage["cached_tokens"])


def test_forged_entries_on_disk_never_change_the_answer(model_dir: Path, tmp_path: Path) -> None:
    disk = tmp_path / "kv"
    store = TieredStore(StoreConfig(memory_bytes=0, disk_dir=str(disk), entry_secret=SECRET))
    engine = TorchEngine(EngineConfig(model_dir=model_dir, dtype="float32", num_threads=2), store=store)
    question, docs = rag_docs(2, 2, 60)
    prompt = engine.build_prompt(question, docs, None)

    cold, cached = answer(engine, prompt)  # nothing stored yet: the answer with no cache at all
    assert cached == 0
    store.flush()
    _, cached = answer(engine, prompt)
    assert cached > 0, "the genuine entries are used"

    files = sorted(disk.glob("*/*.kv"))
    assert len(files) >= 2  # the system prefix and the documents
    disk_tier = store.tier("disk")
    for path in files:
        genuine = decode_entry(path.read_bytes())
        gen = torch.Generator().manual_seed(len(files))
        forged = dataclasses.replace(
            genuine,
            k=(torch.randn(genuine.k.shape, generator=gen) * 4).to(genuine.k.dtype),
            v=(torch.randn(genuine.v.shape, generator=gen) * 4).to(genuine.v.dtype),
        )
        blob = encode(forged)  # what a writer without the secret can make: checksums valid
        assert decode_entry(bytes(blob), expected_key=genuine.key).key == genuine.key
        disk_tier.write_blobs([(genuine.key, blob, 1.0)])  # type: ignore[attr-defined]

    # the control: a reader that does not check tags would blend the forged K/V
    keyless = TieredStore(StoreConfig(memory_bytes=0, disk_dir=str(disk)))
    engine.chunk_cache.store = keyless
    try:
        _, cached = answer(engine, prompt)
    finally:
        engine.chunk_cache.store = store
        keyless.close()
    assert cached > 0

    tokens, cached = answer(engine, prompt)
    assert cached == 0, "no forged entry was used"
    assert tokens == cold
    assert store.stats().tier("disk").unauthenticated >= len(files)
