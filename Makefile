# ShopDesk: `make run` starts the app, `make test` runs every check.
# Both install what is missing first (system packages need root or sudo).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

# rustup installs cargo here; sudo and some CI shells leave it off PATH.
export PATH := $(HOME)/.cargo/bin:$(PATH)

APP := target/debug/shopdesk
# Arguments for the app: make run ARGS="--data-dir /tmp/shop"
ARGS ?=

UI_STAMP := ui/node_modules/.shopdesk-install-stamp

.PHONY: deps ui build run test lint e2e clean help

help:
	@echo "make run    build and start ShopDesk (Xvfb when there is no display)"
	@echo "make test   format, lint, type check, unit, integration and end-to-end tests"
	@echo "make deps | ui | build | e2e | clean"

deps:
	scripts/deps.sh

# npm ci wipes node_modules, so only run it when the lock file (or
# package.json) is newer than the last install.
$(UI_STAMP): ui/package.json $(wildcard ui/package-lock.json)
	cd ui && if [[ -f package-lock.json ]]; then npm ci --no-audit --no-fund; \
		else npm install --no-audit --no-fund; fi
	touch $@

ui: $(UI_STAMP)
	cd ui && npm run build

build: ui
	cargo build -p shopdesk

run: deps build
	scripts/run.sh $(ARGS)

# tests/e2e.rs has `test = false`, so --all-targets leaves it out: lint it too.
lint: ui
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p shopdesk-tests --test e2e -- -D warnings
	cd ui && npm run check

test: deps ui lint
	if [[ "$$(cd ui && npm pkg get scripts.test)" != "{}" ]]; then cd ui && npm test; fi
	cargo test --workspace
	$(MAKE) e2e

e2e: deps build
	scripts/e2e.sh

clean:
	cargo clean
	rm -rf ui/dist ui/node_modules
