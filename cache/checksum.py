"""Checksums of stored K/V bytes.

Entries are megabytes and every read verifies them, so the checksum sits on the fetch path:
CRC-32 (zlib) ran at about 1 GB/s on our CPUs and capped Redis reads below the wire speed,
while XXH3 runs at 5+ GB/s. 32 bits of it are kept: the checksum detects corruption and
truncation; it is not a defence against a malicious writer (the key and fingerprint checks and
the absence of pickle are).
"""

from __future__ import annotations

from typing import Any

import xxhash


def digest(*parts: Any) -> int:
    """32-bit XXH3 checksum of the concatenation of `parts` (buffers), without joining them."""
    h = xxhash.xxh3_64()
    for part in parts:
        h.update(part)
    return h.intdigest() & 0xFFFFFFFF
