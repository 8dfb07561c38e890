"""Content-addressed, position-independent chunk keys.

A key is the hex blake2b digest of everything that determines a chunk's KV cache: the
model, the precompute prefix the chunk was computed after, its token ids and the storage
dtype, plus the tenant's salt so that two tenants never share an entry. The salt must be
derived by the server (e.g. from the authenticated API key), never taken from a client.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Sequence

import numpy as np
import torch

KEY_VERSION = b"ragblend-chunk-key/1"
KEY_HEX_LEN = 64
_KEY_RE = re.compile(r"[0-9a-f]{32,128}")


def _field(value: bytes) -> bytes:
    # Length-prefixing keeps ("ab", "c") and ("a", "bc") apart.
    return struct.pack("<Q", len(value)) + value


def _token_bytes(token_ids: Sequence[int] | np.ndarray | torch.Tensor) -> bytes:
    if isinstance(token_ids, torch.Tensor):
        array = token_ids.detach().cpu().to(torch.int64).numpy()
    else:
        array = np.asarray(token_ids, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"token ids must be one-dimensional, got shape {array.shape}")
    if array.size and (array.min() < -(2**31) or array.max() >= 2**31):
        raise ValueError("token ids must fit in int32")
    return array.astype("<i4").tobytes()


def chunk_key(
    model_fingerprint: str,
    prefix_id: str,
    token_ids: Sequence[int] | np.ndarray | torch.Tensor,
    tenant_salt: bytes | str,
    dtype: str,
) -> str:
    """The store key of a chunk: 64 lowercase hex characters.

    Token ids are hashed as a packed little-endian int32 array. An empty salt is allowed
    (single-tenant deployments) but still yields keys distinct from every non-empty salt.
    """
    salt = tenant_salt.encode() if isinstance(tenant_salt, str) else bytes(tenant_salt)
    h = hashlib.blake2b(digest_size=KEY_HEX_LEN // 2, person=b"ragblend-kv")
    h.update(KEY_VERSION)
    for part in (model_fingerprint.encode(), prefix_id.encode(), salt, dtype.encode()):
        h.update(_field(part))
    h.update(_field(_token_bytes(token_ids)))
    return h.hexdigest()


def is_valid_key(key: str) -> bool:
    """Whether ``key`` is 32-128 lowercase hex characters, as ``chunk_key`` makes them.

    Tiers accept only such keys, which makes them safe as file and Redis names.
    """
    return _KEY_RE.fullmatch(key) is not None
