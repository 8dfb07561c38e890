"""Property-based requests generated from the server's own OpenAPI schema: no input gets a 5xx.

Every operation is called with schema-valid bodies and with deliberately invalid ones (wrong types,
missing fields, out-of-range numbers, odd strings) against a real uvicorn process serving the
embedded model. Every number a request carries must have both bounds in the schema, so that the
invalid mode tries values past each. The only acceptable server-side status is 503 with
Retry-After (busy or not ready); anything else at 500 or above fails the test with the request that
caused it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Err

from tests.e2e.server_process import running_server
from tests.server.schema_bounds import unbounded_numbers

EXAMPLES_PER_MODE = 30


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[str]:
    data = tmp_path_factory.mktemp("fuzz")
    env = {
        "RAGBLEND_DATA_DIR": str(data),
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DTYPE": "float32",
        # small limits keep each generated request cheap; they are still limits to be tested
        "RAGBLEND_MAX_TOKENS_LIMIT": "4",
        "RAGBLEND_MAX_BODY_BYTES": "20000",
        "RAGBLEND_REQUEST_TIMEOUT_S": "60",
    }
    with running_server(env, data / "server.log") as base:
        # a collection and a document, so that some generated names and ids hit real objects
        httpx.post(f"{base}/v1/collections", json={"name": "docs"}, timeout=30)
        httpx.post(
            f"{base}/v1/collections/docs/documents",
            json={"text": "The lamp of the harbour is lit at dusk by the keeper.", "name": "lamp"},
            timeout=30,
        )
        yield base


def _operations(base: str) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise AssertionError(f"the OpenAPI schema does not load: {result.err()}")
        operations.append(result.ok())
    return operations


@pytest.mark.timeout(900)
def test_no_generated_request_gets_a_server_error(base_url: str) -> None:
    # every number a request carries has both bounds, so the negative mode tries values past each
    assert unbounded_numbers(httpx.get(f"{base_url}/openapi.json", timeout=30).json()) == []
    operations = _operations(base_url)
    assert len(operations) >= 15, [op.label for op in operations]
    labels = {op.label for op in operations}
    for route in ("POST /tokenize", "POST /detokenize", "POST /v1/embeddings", "POST /v1/completions"):
        assert route in labels, labels
    failures: list[str] = []
    calls: dict[str, int] = {}
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(op, mode, base_url, failures, calls)
    assert not failures, "\n".join(failures[:10])
    assert sum(calls.values()) >= 10 * len(operations), calls
    assert any(k.startswith("POST /generate") for k in calls), calls
    assert all(
        calls.get(r, 0) >= 10 for r in ("POST /tokenize", "POST /detokenize", "POST /v1/embeddings")
    ), calls


def _fuzz(
    op: schemathesis.APIOperation,
    mode: GenerationMode,
    base: str,
    failures: list[str],
    calls: dict[str, int],
) -> None:
    try:
        strategy = op.as_strategy(generation_mode=mode)
    except Exception as exc:  # some operations have nothing invalid to generate
        if mode is GenerationMode.NEGATIVE:
            return
        raise AssertionError(f"{op.label}: no strategy: {exc}") from exc

    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(strategy)
        try:
            response = case.call(base_url=base, timeout=90)
        except Exception as exc:  # a hang or a dropped connection is a failure too
            failures.append(f"{op.label} ({mode.value}): {type(exc).__name__}: {exc}")
            return
        status = response.status_code
        calls[op.label] = calls.get(op.label, 0) + 1
        busy = status == 503 and "retry-after" in {k.lower() for k in response.headers}
        if status >= 500 and not busy:
            failures.append(
                f"{op.label} ({mode.value}) -> {status}: {response.text[:300]}\n  {case.as_curl_command()}"
            )

    try:
        run()
    except Unsatisfiable:
        # an operation without parameters or body has no invalid request to generate
        if mode is not GenerationMode.NEGATIVE:
            raise
