"""Reusing chunk KV caches inside a prompt: precompute, placement, selective recompute (CacheBlend,
Cache-Craft) and the modes that compare them."""
