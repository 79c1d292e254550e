# Capstan. `make help` lists the targets.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin

# The Podman bindings need these tags (see docs/ARCHITECTURE.md).
TAGS := remote exclude_graphdriver_btrfs btrfs_noversion exclude_graphdriver_devicemapper containers_image_openpgp
GO ?= go
DATA ?= $(CURDIR)/.data
IMAGE ?= localhost/capstan-demo:latest
TEST_TIMEOUT ?= 20m
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: help build test test-short test-unit up deps image lint tidy clean bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/capstan, bin/capstan-node (the node daemon alone) and bin/capstan-server (the control plane and CLI, no Podman)
	$(GO) build -tags "$(TAGS)" -o bin/capstan ./cmd/capstan
	$(GO) build -tags "$(TAGS) nodeonly" -o bin/capstan-node ./cmd/capstan
	$(GO) build -tags "$(TAGS) serveronly" -o bin/capstan-server ./cmd/capstan

deps: ## install Podman, runc, busybox-static and friends when missing (Debian, root)
	@if [ "$$(id -u)" = 0 ]; then scripts/install-deps.sh; \
	else command -v podman >/dev/null || { echo "make deps: run as root to install Podman"; exit 1; }; fi

image: deps ## build the local demo/test image when missing
	scripts/build-image.sh $(IMAGE)

test: deps image ## install what is missing, build, and run every test (end-to-end with real Podman) under -race
	$(GO) build -tags "$(TAGS)" -o bin/capstan ./cmd/capstan
	CAPSTAN_REQUIRE_PODMAN=1 $(GO) test -race -tags "$(TAGS)" -timeout $(TEST_TIMEOUT) -count=1 ./...
	$(MAKE) fuzz FUZZTIME=3s

test-short: ## the fast tier: every test but the Podman tier (go test -short)
	$(GO) test -short -count=1 -tags "$(TAGS)" ./...

test-unit: ## every test under -race, Podman optional (its tier skips where Podman is missing)
	$(GO) test -race -tags "$(TAGS)" -count=1 ./...

FUZZTIME ?= 5s
.PHONY: fuzz
fuzz: ## run every fuzz target (scripts/fuzz.sh) for FUZZTIME (5s) each; a failing input is saved in its package's testdata/fuzz
	FUZZTIME=$(FUZZTIME) TAGS="$(TAGS)" GO="$(GO)" scripts/fuzz.sh

up: deps image build ## run Capstan on the bundled demo (a git repo made in $(DATA)/demo-repo)
	scripts/demo-repo.sh $(DATA)/demo-repo
	bin/capstan up --repo $(DATA)/demo-repo --data-dir $(DATA)

BENCH_TIMEOUT ?= 30m
bench: deps image build ## every benchmark of issue 6 (~10 min): a table, bench/results.json, bench/*.png, docs/BENCHMARKS.md (BENCH_NODES, BENCH_PODS... scale it)
	cd cmd/capstan && CAPSTAN_REQUIRE_PODMAN=1 $(GO) test -tags "bench $(TAGS)" -run '^TestBench$$' -count=1 -v -timeout $(BENCH_TIMEOUT) .

lint: ## go vet, gofmt and staticcheck
	$(GO) vet -tags "$(TAGS)" ./...
	$(GO) vet -tags "$(TAGS) nodeonly" ./cmd/capstan
	$(GO) vet -tags "$(TAGS) serveronly" ./cmd/capstan
	$(GO) vet -tags "$(TAGS) bench" ./cmd/capstan
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) -tags "$(TAGS)" ./...
	$(GO) run $(STATICCHECK) -tags "$(TAGS) nodeonly" ./cmd/capstan
	$(GO) run $(STATICCHECK) -tags "$(TAGS) serveronly" ./cmd/capstan
	$(GO) run $(STATICCHECK) -tags "$(TAGS) bench" ./cmd/capstan

tidy: ## go mod tidy
	$(GO) mod tidy

clean: ## remove bin/ (not the data dir)
	rm -rf bin
