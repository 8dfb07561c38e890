"""The vLLM backend: vLLM's scheduler and kernels serve the requests, our KV connector injects the
chunk caches blended beside it (see engine/vllm/backend.py for where the blend runs and why)."""
