# Hearth: build, run, test.
#
#   make run        build, then `hearth serve` with its defaults (c2s 5222/5223 on
#                   127.0.0.1, domain localhost), data in ./data (DATA=dir to change)
#   make build      build bin/hearth
#   make test       install test deps, go vet, go test with HEARTH_INTEROP=1 (the
#                   interop tests against slixmpp and go-sendxmpp are mandatory)
#   make lint       gofmt, go vet, staticcheck, shellcheck
#   make bench      Go benchmarks (placeholder: every Benchmark in the module)
#   make test-slow  long tests (load, soak, image boot): gated in Go by HEARTH_SLOW=1;
#                   placeholder until such tests exist
#   make clean      remove bin/ (never ./data)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
GOBIN_DIR := $(shell d=$$($(GO) env GOBIN); echo "$${d:-$$($(GO) env GOPATH)/bin}")
STATICCHECK := $(GOBIN_DIR)/staticcheck
BIN := bin/hearth
DATA ?= data
RUN_FLAGS ?=
TEST_TIMEOUT ?= 20m

.PHONY: all run build deps test lint bench test-slow clean

all: build

build:
	$(GO) build -o $(BIN) ./appliance/cmd/hearth

# The same invocation is exercised by appliance/interop TestMakeRunDefaults.
run: build
	./$(BIN) serve --data $(DATA) $(RUN_FLAGS)

deps:
	scripts/install-deps.sh

# -count=1: the interop tests exec a freshly built hearth binary, which go
# test's result cache cannot see.
test: deps
	$(GO) vet ./...
	HEARTH_INTEROP=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

lint: deps
	@out=$$(gofmt -l .); if [[ -n "$$out" ]]; then echo "gofmt -l:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	shellcheck .ci/run scripts/*.sh scripts/*/*.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

test-slow: deps
	HEARTH_INTEROP=1 HEARTH_SLOW=1 $(GO) test -count=1 -timeout 60m ./...

clean:
	rm -rf bin
