# Two commands on a fresh clone: `make run` and `make test`. Each sets up what it needs.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ondata-installed
APT_STAMP := $(VENV)/.ondata-apt
DEBS := tesseract-ocr tesseract-ocr-eng poppler-utils libmagic1 chromium
export DO_NOT_TRACK := true
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run test test-all lint bench clean

setup: $(STAMP)

$(APT_STAMP):
	@mkdir -p $(VENV)
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

$(STAMP): pyproject.toml constraints.txt $(APT_STAMP)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip wheel setuptools
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,eval]'
	$(BIN)/pip install -q -c constraints.txt --no-build-isolation ./packaging/en_core_web_sm
	@# unstructured[pdf] would pull a CUDA torchvision that breaks sentence-transformers.
	@! $(BIN)/python -c 'import torchvision' 2>/dev/null || $(BIN)/pip uninstall -y -q torchvision timm
	$(BIN)/python -m retrieval.onnx_export
	@touch $@

HOST ?= 127.0.0.1
PORT ?= 8000
QUESTION := Must the standing trustee separate cash handling duties from record keeping?

run: setup
	$(BIN)/ondata ingest data/samples --index default
	@echo
	@echo "ondata is starting on http://$(HOST):$(PORT) (index 'default' holds data/samples)."
	@echo
	@echo "  Playground (chat, data, evaluations) in a browser: http://$(HOST):$(PORT)/"
	@echo
	@echo "From code, try:"
	@echo
	@echo "  curl -s http://$(HOST):$(PORT)/v1/chat/completions -H 'Content-Type: application/json' -d '{\"messages\": [{\"role\": \"user\", \"content\": \"$(QUESTION)\"}], \"data_sources\": [{\"type\": \"ondata\", \"parameters\": {\"index_name\": \"default\"}}]}'"
	@echo
	@echo "  $(BIN)/python -c \"from openai import OpenAI; c = OpenAI(base_url='http://$(HOST):$(PORT)/v1', api_key='unused'); r = c.chat.completions.create(model='ondata', messages=[{'role': 'user', 'content': '$(QUESTION)'}], extra_body={'data_sources': [{'type': 'ondata', 'parameters': {'index_name': 'default'}}]}); print(r.choices[0].message.content)\""
	@echo
	$(BIN)/ondata serve --host $(HOST) --port $(PORT)

test: setup
	$(BIN)/python -m pytest -q -m 'not slow'

test-all: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check core ingest retrieval api evaluation tests bench
	$(BIN)/ruff format --check core ingest retrieval api evaluation tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .ondata .pytest_cache
