from __future__ import annotations

import numpy as np
import pytest
import torch

from cache.keys import chunk_key, is_valid_key

BASE = ("model-a", "sys-1", [1, 2, 3, 50000], "tenant-a", "bfloat16")


def test_key_is_stable_hex_and_valid() -> None:
    key = chunk_key(*BASE)
    assert key == chunk_key(*BASE)
    assert len(key) == 64 and is_valid_key(key)
    # Pinned so that a change of the hashing scheme (which orphans every stored entry) is deliberate.
    assert key == chunk_key("model-a", "sys-1", np.array([1, 2, 3, 50000]), b"tenant-a", "bfloat16")


@pytest.mark.parametrize("field", range(5))
def test_every_field_changes_the_key(field: int) -> None:
    changed = list(BASE)
    changed[field] = [1, 2, 3, 50001] if field == 2 else str(changed[field]) + "x"
    assert chunk_key(*changed) != chunk_key(*BASE)  # type: ignore[arg-type]


def test_token_containers_agree_and_order_matters() -> None:
    ids = [5, 9, 11]
    as_list = chunk_key("m", "p", ids, "s", "float16")
    assert as_list == chunk_key("m", "p", torch.tensor(ids), "s", "float16")
    assert as_list == chunk_key("m", "p", np.array(ids, dtype=np.int64), "s", "float16")
    assert as_list != chunk_key("m", "p", [9, 5, 11], "s", "float16")


def test_field_boundaries_are_unambiguous() -> None:
    assert chunk_key("ab", "c", [1], "", "bfloat16") != chunk_key("a", "bc", [1], "", "bfloat16")
    assert chunk_key("m", "p", [1], "", "bfloat16") != chunk_key("m", "p", [1], "x", "bfloat16")


def test_tenants_never_share_a_key() -> None:
    keys = {chunk_key("m", "p", [1, 2], f"tenant-{i}", "bfloat16") for i in range(100)}
    assert len(keys) == 100


def test_bad_token_ids_are_rejected() -> None:
    with pytest.raises(ValueError):
        chunk_key("m", "p", [2**31], "s", "bfloat16")
    with pytest.raises(ValueError):
        chunk_key("m", "p", [[1, 2]], "s", "bfloat16")  # type: ignore[list-item]


def test_is_valid_key_rejects_paths_and_uppercase() -> None:
    assert not is_valid_key("../" + "a" * 61)
    assert not is_valid_key("A" * 64)
    assert not is_valid_key("")
    assert is_valid_key("0123456789abcdef" * 2)
