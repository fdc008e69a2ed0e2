# Hearth: build, run, test.
#
#   make run        build, then `hearth serve` with its defaults (c2s 5222/5223 on
#                   127.0.0.1, domain localhost), data in ./data (DATA=dir to change)
#   make build      build bin/hearth (first `make webclient`: Converse.js from npm into
#                   appliance/webclient/dist/, embedded and served at /chat/)
#   make test       install test deps, go vet, go test with HEARTH_INTEROP=1 (the
#                   interop tests against slixmpp and go-sendxmpp are mandatory)
#   make lint       gofmt, go vet, staticcheck, shellcheck
#   make bench      Go benchmarks (every Benchmark in the module), then Hearth,
#                   Prosody and ejabberd side by side under scripts/load
#                   (scripts/bench/run.sh; BENCH_QUICK=1: smoke run)
#   make test-slow  long tests (load, soak, image boot): gated in Go by HEARTH_SLOW=1;
#                   placeholder until such tests exist
#   make image      Raspberry Pi SD-card image: image/out/hearth-rpi.img and .img.xz
#                   (gokrazy; installs the arm64 cross compiler from Debian; prints
#                   the setup code). SETUP_CODE=, GOKRAZY_PASSWORD= to choose them
#   make update     over-the-air update of a running Pi with `gok update`
#                   (DEVICE=host or address, default hearth)
#   make image-test boot the image in QEMU: web, XMPP, `gok update`, data kept
#                   (also part of make test-slow)
#   make release    static linux amd64/arm64 binaries + systemd unit in image/out/release
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

.PHONY: all run build deps test lint templ-check bench bench-deps test-slow clean image-deps image update image-test release webclient

all: build

build: webclient
	$(GO) build -o $(BIN) ./appliance/cmd/hearth

# The web chat at /chat: Converse.js from npm (pinned) copied into
# appliance/webclient/dist/ for go:embed; a no-op when it is up to date.
webclient:
	scripts/build-webclient.sh

# The same invocation is exercised by appliance/interop TestMakeRunDefaults.
run: build
	./$(BIN) serve --data $(DATA) $(RUN_FLAGS)

deps:
	scripts/install-deps.sh

# -count=1: the interop tests exec a freshly built hearth binary, which go
# test's result cache cannot see.
test: deps webclient
	$(GO) vet ./...
	HEARTH_INTEROP=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

lint: deps templ-check
	@out=$$(gofmt -l .); if [[ -n "$$out" ]]; then echo "gofmt -l:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	shellcheck .ci/run scripts/*.sh scripts/*/*.sh

# The generated webui/*_templ.go files are checked in; fail if `templ generate`
# (pinned in go.mod as a tool) would change them.
templ-check:
	@tmp=$$(mktemp -d "$$PWD/.templ-check.XXXXXX"); trap 'rm -rf "$$tmp"' EXIT; cp -r webui/. "$$tmp"/; \
	$(GO) tool templ generate -path "$$tmp" >/dev/null; \
	if ! diff -r webui "$$tmp"; then echo "webui: generated templ files are stale: run go tool templ generate -path webui"; exit 1; fi

# Go benchmarks, then Hearth against Prosody 0.12 and ejabberd 23.01 under the
# same load (scripts/bench/run.sh; BENCH_QUICK=1 for a smoke run, BENCH_OUT=file
# for the table; needs root).
bench-deps:
	scripts/install-bench-deps.sh

bench: deps bench-deps webclient
	$(GO) test -run '^$$' -bench . -benchmem ./...
	scripts/bench/run.sh

test-slow: deps webclient
	HEARTH_INTEROP=1 HEARTH_SLOW=1 $(GO) test -count=1 -timeout 60m ./...

# The SD-card image (scripts/image.sh), its boot test (scripts/image-test.sh,
# image/imagetest) and installs without it (scripts/release.sh); see README.md.
DEVICE ?= hearth

image-deps:
	scripts/install-image-deps.sh

image: image-deps webclient
	scripts/image.sh build

update: image-deps webclient
	UPDATE_HOST=$(DEVICE) scripts/image.sh update

image-test: webclient
	HEARTH_IMAGE_TEST=1 $(GO) test -count=1 -v -timeout 30m -run TestImageQEMU ./image/imagetest/

release: image-deps webclient
	scripts/release.sh

clean:
	rm -rf bin
