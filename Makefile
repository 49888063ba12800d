PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SYSTEM_PACKAGES := liblz4-dev libzstd-dev libxxhash-dev libacl1-dev libssl-dev pkg-config openssh-server openssh-client util-linux systemd systemd-container rclone
PYTEST_ARGS ?=
# make bench ARGS=--scale (or --quick, --large, --scale-files N --scale-archives N ...)
ARGS ?=

.PHONY: setup run test bench install clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	scripts/install-system-packages $(SYSTEM_PACKAGES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: setup
	$(BIN)/python examples/run_demo.py

test: setup
	$(BIN)/python -m pyflakes backupd backupctl bench tests examples
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m bench $(ARGS)

install:
	scripts/install

clean:
	rm -rf $(VENV) .run .pytest_cache .hypothesis .mypy_cache
