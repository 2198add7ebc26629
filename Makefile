# mailarray — see README.md.
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -mod=mod
BIN := bin/mailarray
PKGS := ./...
# Packages that run goroutines (servers, replication, simulator) run under -race.
RACE_PKGS := ./node/... ./sim/...
SCENARIO ?=

.PHONY: all build test test-race vet fmt-check cluster bench bench-real chaos clean deps

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/mailarray

deps:
	$(GO) mod download
	@command -v swaks >/dev/null && command -v curl >/dev/null && command -v dig >/dev/null || \
		{ echo "make: installing real mail/DNS clients used by the tests (swaks, curl, dnsutils)"; \
		  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq swaks curl dnsutils) >/dev/null 2>&1 || \
		  echo "make: could not install swaks/curl/dnsutils; tests that need them will skip"; }

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Every test: unit, loopback integration with real clients, simulator,
# fuzz seed corpora; then the race detector on the concurrent packages.
test: deps fmt-check vet build
	$(GO) test -count=1 -timeout 15m $(PKGS)
	$(GO) test -count=1 -race -timeout 15m $(RACE_PKGS)

# A three-node cluster on loopback, R=2 W=2; Ctrl-C stops it.
cluster: build
	./scripts/cluster.sh

clean:
	rm -rf bin tmp
