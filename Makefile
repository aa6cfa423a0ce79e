# duecourse: `make demo` and `make test` each set everything up on a fresh machine.
SHELL := /bin/bash
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: system setup demo test lint typecheck unit bench clean

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-extras --python python3
	touch $@

# Letters need the Noto CJK fonts (typst embeds them) and pdftotext (the clarity lint reads PDFs back);
# installed from the distribution's packages when missing (Debian/Ubuntu, as root or through sudo).
SYSTEM_PACKAGES := fonts-noto-cjk poppler-utils

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
		echo "installing$$missing"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

setup: system $(VENV)/.synced

demo: setup
	$(VENV)/bin/duecourse demo

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: setup
	$(VENV)/bin/mypy

test: setup lint typecheck
	$(VENV)/bin/pytest -q

bench: setup
	$(PY) bench/daily_run.py --accounts 100000

clean:
	rm -rf $(VENV) $(TOOLS) out duecourse.db
