"""Keyed authentication of encoded chunk entries, so a shared tier cannot feed us forged K/V.

The checksums of ``cache.codec`` catch accidents; anyone who can write to a shared Redis can
recompute them. With a server secret, every entry also carries MAC tags that only holders of the
secret can make. Each entry has a random 16-byte nonce; its subkey is HMAC-SHA256(master, nonce),
and each tag is AES-256-GCM over no plaintext with the tagged bytes as associated data (GMAC),
under a counter nonce (0: header and metadata, 1: the stored payload, 2 + 2l and 3 + 2l: K and V
of layer l), so every (subkey, nonce) pair tags one message. GMAC runs at memory speed with
AES-NI and carry-less multiplication (tens of GB/s, against ~1 GB/s for HMAC-SHA256), so the read
path stays cheap; ``bench/kv_auth.py`` measures it.

Optionally the stored payload is also encrypted (AES-256-GCM under a second key derived from the
entry's subkey, with the entry's key and model fingerprint as associated data), so a shared tier
holds no readable K/V; a ciphertext that does not open under this server's key is a miss.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ALGORITHM = "aes256-gmac"
TAG_SIZE = 16
NONCE_SIZE = 16
META, PAYLOAD = 0, 1
_SEALED_NONCE = bytes(12)  # the sealing key is used for one message only: the entry's payload


def layer_tag_index(layer: int, part: int) -> int:
    """The counter of K (part 0) or V (part 1) of ``layer``."""
    return 2 + 2 * layer + part


class EntrySigner:
    """Makes and checks the tags of one entry (one nonce)."""

    def __init__(self, subkey: bytes) -> None:
        self._aead = AESGCM(subkey)
        self._subkey = subkey

    def _sealer(self) -> AESGCM:
        return AESGCM(hmac.digest(self._subkey, b"ragblend payload encryption", hashlib.sha256))

    def seal(self, data: Any, associated: bytes) -> bytes:
        """``data`` encrypted, its GCM tag appended (TAG_SIZE more bytes)."""
        return self._sealer().encrypt(_SEALED_NONCE, bytes(data) if _needs_copy(data) else data, associated)

    def open(self, data: Any, associated: bytes) -> bytes | None:
        """The plaintext of ``seal``'s output, or None if it was not sealed with this key and data."""
        buf = bytes(data) if _needs_copy(data) else data
        try:
            return self._sealer().decrypt(_SEALED_NONCE, buf, associated)
        except InvalidTag:
            return None

    def tag(self, index: int, data: Any) -> bytes:
        return self._aead.encrypt(
            index.to_bytes(12, "little"), b"", bytes(data) if _needs_copy(data) else data
        )

    def check(self, index: int, data: Any, tag: bytes) -> bool:
        return hmac.compare_digest(self.tag(index, data), tag)


def sealed_associated_data(key: str, fingerprint: str) -> bytes:
    """What an encrypted payload is bound to: the entry's key and model fingerprint."""
    k, f = key.encode(), fingerprint.encode()
    return len(k).to_bytes(4, "little") + k + len(f).to_bytes(4, "little") + f


class EntryAuth:
    """The server's key for chunk entries, derived from a secret that every replica shares."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the chunk-entry secret must not be empty")
        self._master = hmac.digest(secret, b"ragblend chunk-cache entries v1", hashlib.sha256)

    def new_nonce(self) -> bytes:
        return os.urandom(NONCE_SIZE)

    def signer(self, nonce: bytes) -> EntrySigner:
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"entry nonce must have {NONCE_SIZE} bytes")
        return EntrySigner(hmac.digest(self._master, nonce, hashlib.sha256))


def _needs_copy(data: Any) -> bool:
    # AESGCM takes any contiguous buffer; a memoryview of an mmap or bytearray qualifies, but a
    # non-byte or non-contiguous view must be flattened first
    return isinstance(data, memoryview) and (data.format != "B" or not data.contiguous)
