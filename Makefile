# mailarray — see README.md.
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -mod=mod
BIN := bin/mailarray
PKGS := ./...
# Packages that run goroutines (servers, replication, simulator) run under -race.
RACE_PKGS := ./node/... ./sim/...
SCENARIO ?=

.PHONY: truth calibrate bench-anchors profile deploy-walkthrough soak-real bench bench-compare bench-saturation bench-scale bench-real chaos chaos-soak mutants sim-test image compose-up compose-down compose-purge all build test test-race vet fmt-check cluster bench bench-real chaos clean deps sim-test

all: build

# The version the binary reports (mailarray version, status, metrics, log).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN) ./cmd/mailarray

deps:
	$(GO) mod download
	@command -v swaks >/dev/null && command -v curl >/dev/null && command -v dig >/dev/null && command -v dnsperf >/dev/null && command -v openssl >/dev/null || \
		{ echo "make: installing real mail/DNS/TLS clients used by the tests (swaks, curl, dnsutils, dnsperf, openssl)"; \
		  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq swaks curl dnsutils dnsperf openssl) >/dev/null 2>&1 || \
		  echo "make: could not install swaks/curl/dnsutils/dnsperf/openssl; tests that need them will skip (the deploy walkthrough fails)"; }
	@command -v postfix >/dev/null || [ -x /usr/sbin/postfix ] || \
		{ echo "make: installing Postfix for the end-to-end relay test (Debian's postfix, a private instance per test, not the system's)"; \
		  (apt-get update -qq && echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
		   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix) >/dev/null 2>&1 || \
		  echo "make: could not install postfix; the Postfix test will skip"; }
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null || \
		{ echo "make: installing headless Chromium for the webmail browser test (Debian's chromium)"; \
		  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 || \
		  echo "make: could not install chromium; the webmail browser test will skip"; }

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Every test: unit, loopback integration with real clients, simulator,
# fuzz seed corpora; the deployment guide followed end to end on loopback
# (scripts/deploy-walkthrough.sh); then the race detector on the concurrent
# packages.
test: deps fmt-check vet build
	$(GO) test -count=1 -timeout 15m $(PKGS)
	./scripts/deploy-walkthrough.sh
	$(GO) test -count=1 -race -timeout 15m $(RACE_PKGS)

# docs/deploy.md followed as an operator would, three nodes on loopback
# (also part of make test).
deploy-walkthrough: build
	./scripts/deploy-walkthrough.sh

# A three-node cluster on loopback, R=2 W=2; Ctrl-C stops it.
cluster: build
	./scripts/cluster.sh

clean:
	rm -rf bin tmp

# The three-node cluster as containers (Docker Engine + docker-compose).
COMPOSE ?= $(shell command -v docker-compose >/dev/null && echo docker-compose || echo docker compose)
image: build
	docker build -q -t mailarray:dev .

# The peer key is generated once into .env (read by compose, kept across
# runs so restarted nodes keep talking to each other), never a demo value.
compose-up: image
	@[ -s .env ] && grep -q '^MAILARRAY_PEER_KEY=' .env || \
		{ umask 077; echo "MAILARRAY_PEER_KEY=$$(head -c 32 /dev/urandom | base64)" >> .env; echo "make: wrote a random peer key to .env"; }
	$(COMPOSE) up -d --no-build
	@echo "n1: smtp 127.0.0.1:12525 pop3 127.0.0.1:11110 imap 127.0.0.1:11143 dns 127.0.0.1:15353 http 127.0.0.1:18080 (n2, n3: +1, +2)"

# Stops the containers and keeps their volumes, which hold the mail.
# compose-purge deletes the volumes too: every message in the array.
compose-down:
	$(COMPOSE) down

compose-purge:
	@echo "make: deleting the cluster's volumes: all of its mail"
	$(COMPOSE) down -v

# The simulator: scenarios/<name>.yaml -> results/<name>.json. One P is
# its fastest setting (the simulator sets it itself when run otherwise,
# and collects garbage at a memory limit: sim/gc.go). Without SCENARIO
# every scenario runs in turn.
SIM_ENV := GOMAXPROCS=1
# Simulator benchmarks: see docs/bench.md. SCENARIO=name runs one
# scenario (scale: the growth sweep); without it every scenario runs, then
# the saturation search and the growth sweep, then the comparison page.
bench:
	@set -e; \
	if [ -n "$(SCENARIO)" ]; then names="$(SCENARIO)"; \
	else names=$$(ls scenarios/*.yaml | xargs -n1 basename | sed 's/\.yaml$$//' | grep -v '^scale$$'); fi; \
	for s in $$names; do \
		if [ "$$s" = scale ]; then $(MAKE) --no-print-directory bench-scale; continue; fi; \
		echo "make: scenario $$s"; \
		SCENARIO=$$s $(SIM_ENV) $(GO) test ./sim -v -run '^TestScenario$$' -count=1 -timeout 30m; \
		$(GO) run ./bench/cmd/benchreport -in results/$$s.json -out results/$$s.md; \
		echo "make: report in results/$$s.json and results/$$s.md"; \
	done; \
	if [ -z "$(SCENARIO)" ]; then $(MAKE) --no-print-directory bench-saturation bench-scale; fi; \
	$(MAKE) --no-print-directory bench-compare

bench-compare:
	$(GO) run ./bench/cmd/benchreport -compare -out results/README.md results/*.json

bench-saturation:
	BENCH_SATURATION=1 $(SIM_ENV) $(GO) test ./bench -run '^TestSaturation$$' -count=1 -v -timeout 3h

bench-scale:
	BENCH_SCALE=1 $(SIM_ENV) $(GO) test ./bench -run '^TestScaleSweep$$' -count=1 -v -timeout 1h

# The scenario's load against real mailarray serve processes on loopback.
bench-real: build
	$(GO) run ./bench/cmd/benchreal -scenario $(or $(SCENARIO),roundrobin)
	$(MAKE) --no-print-directory bench-compare

# The simulator's cost-model parameters measured on this machine (real
# mailarray serve processes under controlled load, the same array as Docker
# containers for the host's share, a disk and a loopback
# probe): scenarios/profiles/$(PROFILE).yaml, which a scenario names with
# cost_profile: $(PROFILE). About 4 minutes (docs/bench.md "Calibration").
# CALIBRATE_FLAGS passes more flags (-repeats, -messages, -rate, -sizes, -out).
PROFILE ?= calibrated
CALIBRATE_FLAGS ?=
calibrate: build image
	$(GO) run ./bench/cmd/calibrate -name $(PROFILE) $(CALIBRATE_FLAGS)

# The side-by-side comparisons of issue 21 (docs/performance.md): durable
# ingest against Postfix (3 nodes R=2 W=2, then one node), IMAP and POP3
# reads against Dovecot, and the simulator's BenchmarkSimThreeNodeR2;
# writes results/anchors.md. The comparisons are the shared scripts in
# $(SHARED_BENCH), outside the repository (they install Postfix and
# Dovecot from Debian's packages when missing). About 15-20 min with the
# issue's method (3 rounds, 6,000 ingest and 1,000 read messages, 100,000
# simulated). A smoke run: make bench-anchors ANCHOR_ROUNDS=1 ANCHOR_MSGS=300
# ANCHOR_SIM_MSGS=2000 ANCHOR_OUT=/tmp/anchors.md
SHARED_BENCH ?= ../shared/bench
ANCHOR_OUT ?= results/anchors.md
bench-anchors:
	@[ -f "$(SHARED_BENCH)/ingest_compare.py" ] && [ -f "$(SHARED_BENCH)/access_compare.py" ] || \
		{ echo "make: the shared side-by-side scripts are missing: no $(SHARED_BENCH)/ingest_compare.py or access_compare.py."; \
		  echo "make: they live outside the repository (../shared/bench beside the checkout); set SHARED_BENCH=/path/to/shared/bench"; exit 1; }
	$(GO) run ./bench/cmd/benchanchors -shared '$(SHARED_BENCH)' -out '$(ANCHOR_OUT)' \
		$(if $(ANCHOR_ROUNDS),-rounds $(ANCHOR_ROUNDS)) \
		$(if $(ANCHOR_MSGS),-ingest-msgs $(ANCHOR_MSGS) -access-msgs $(ANCHOR_MSGS)) \
		$(if $(ANCHOR_INGEST_MSGS),-ingest-msgs $(ANCHOR_INGEST_MSGS)) \
		$(if $(ANCHOR_ACCESS_MSGS),-access-msgs $(ANCHOR_ACCESS_MSGS)) \
		$(if $(ANCHOR_SIM_MSGS),-sim-msgs $(ANCHOR_SIM_MSGS))

# Where one path's time goes (docs/performance.md): CPU profiles of three
# real nodes (serve --pprof, loopback only) broken down by category, strace
# syscall counts per message, and the machine's floors (fsync/s, loopback
# bandwidth, go-smtp with a discard backend). PATH_NAME=ingest|imap|pop3|
# floors; output in tmp/profile-$(PATH_NAME)/ (profiles, report.txt).
PATH_NAME ?= ingest
PROFILE_SECONDS ?= 20
STRACE_SECONDS ?= 10
PROFILE_MSGS ?= 1000
PROFILE_FLOORS ?= 1
profile: build
	@command -v smtp-source >/dev/null || [ -x /usr/sbin/smtp-source ] || \
		{ echo "make: installing Postfix for its smtp-source load generator (Debian's postfix; the system's Postfix is not started)"; \
		  apt-get update -qq >/dev/null && echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null; }
	@command -v strace >/dev/null || { echo "make: installing strace"; apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null; }
	PATH="$$PATH:/usr/sbin" $(GO) run ./bench/cmd/profilepath -path '$(PATH_NAME)' -seconds $(PROFILE_SECONDS) \
		-strace-seconds $(STRACE_SECONDS) -msgs $(PROFILE_MSGS) $(if $(filter 0,$(PROFILE_FLOORS)),-floors=false)

# The simulator against a real heterogeneous array (issue 20): four node
# containers with CPU quotas summing to 1.6 CPUs and one emulated slow
# disk, and the same array as a scenario with the calibrated costs
# (PROFILE, make calibrate). Per strategy: the saturation point (the
# simulator's search and criterion on both sides), p50/p99 and copy
# shares at a nominal rate -> results/truth.json and results/truth.md.
# 16.5 minutes for all eight strategies on a quiet machine (docs/bench.md "Truth run"). TRUTH_QUICK=1: a smoke run
# (roundrobin, short runs, 2 probes) to tmp/truth/results. TRUTH_FLAGS
# passes more flags (-strategies, -rate, -duration, -max-probes, -out).
TRUTH_FLAGS ?=
truth: image
	TRUTH_QUICK=$(TRUTH_QUICK) $(GO) run ./bench/cmd/truth -profile $(PROFILE) $(TRUTH_FLAGS)
	@[ "$(TRUTH_QUICK)" = 1 ] || $(MAKE) --no-print-directory bench-compare

# The real-process soak: RUNS runs (seeds SEED..SEED+RUNS-1) of three
# mailarray serve processes on loopback under load, each with SIGKILL and
# restart, SIGSTOP/SIGCONT or a restart from a backup, checked against what
# the load saw acknowledged; report in results/soak-real.md (rewritten after
# every run). About 40 s a run on 2 cores (100 runs: about 70 min).
# RUNS=1 SEED=N replays one run; bin/soakreal -plan -runs N lists the faults.
RUNS ?= 100
SEED ?= 1
soak-real: build
	CGO_ENABLED=0 $(GO) build -o bin/soakreal ./chaos/cmd/soakreal
	bin/soakreal -runs $(RUNS) -seed $(SEED)

# Chaos: the simulator's failpoint fault matrix in a rewritten scratch copy
# (the tree is never rewritten), then the container suite.
# CHAOS_RUN=<pattern> replays one test; CHAOS_SEEDS=N; CHAOS_DOCKER=0 skips containers.
CHAOS_RUN ?=
chaos:
	./chaos/run.sh '$(value CHAOS_RUN)'

# The same simulator matrix over many seeds: RUNS=N runs in all, spread
# over every cell, sharded over SHARDS processes (default 2) with their
# own seed ranges; the report goes to results/chaos-soak.md (chaos/soak.sh).
# SOAK_CELLS=ring/ runs only the cells it matches; SOAK_OUT names the report.
RUNS ?= 1000
SHARDS ?= 2
chaos-soak:
	RUNS=$(RUNS) SHARDS=$(SHARDS) SOAK_CELLS='$(SOAK_CELLS)' SOAK_OUT='$(SOAK_OUT)' ./chaos/soak.sh

# Mutation testing: each deliberate bug of mutants/*.patch is applied to a
# scratch copy and must be caught by its killing tests; the table goes to
# results/mutants.md (mutants/run.sh). MUTANTS="a b" runs only those.
mutants:
	./mutants/run.sh


# The simulator's own tests, including the determinism check (small scenario
# run twice, byte-identical report).
sim-test:
	$(GO) test -count=1 -timeout 10m ./sim/
