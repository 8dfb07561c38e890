"""Errors raised by the codec; tiers turn every one of them into a miss and a counter."""

from __future__ import annotations


class CorruptEntry(Exception):
    """Stored bytes that must not be used: truncated, damaged, foreign or mismatched.

    ``reason`` is a short machine-readable word (e.g. "checksum", "truncated").
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class UnsupportedVersion(CorruptEntry):
    """Bytes written by a codec version this code does not read."""


class WrongModel(CorruptEntry):
    """An entry whose model fingerprint or key differs from the one asked for."""
