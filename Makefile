# mailarray — see README.md.
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -mod=mod
BIN := bin/mailarray
PKGS := ./...
# Packages that run goroutines (servers, replication, simulator) run under -race.
RACE_PKGS := ./node/... ./sim/...
SCENARIO ?=

.PHONY: image compose-up compose-down all build test test-race vet fmt-check cluster bench bench-real chaos clean deps

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

# The three-node cluster as containers (Docker Engine + docker-compose).
COMPOSE ?= $(shell command -v docker-compose >/dev/null && echo docker-compose || echo docker compose)
image: build
	docker build -q -t mailarray:dev .

compose-up: image
	$(COMPOSE) up -d --no-build
	@echo "n1: smtp 127.0.0.1:12525 pop3 127.0.0.1:11110 dns 127.0.0.1:15353 http 127.0.0.1:18080 (n2, n3: +1, +2)"

compose-down:
	$(COMPOSE) down -v
