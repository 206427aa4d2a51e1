# ucgate build, test and benchmark entry points.
#
#   make build   bin/ucgate
#   make run     the gateway with its embedded default config (data in ./data)
#   make test    deps, vet, unit tests (-race), short fuzz runs, e2e tests
#   make bench   scripts/bench.sh (BENCH_QUICK=1 for a short run)
#   make lint    gofmt, go vet, staticcheck

GO ?= go
# staticcheck 2026.2.2, built with the local Go toolchain (supports go1.26).
STATICCHECK_VERSION ?= v0.8.2
E2E_TIMEOUT ?= 15m

# e2e tests find the gateway binary here (e2e/harness.GatewayBinary).
export UCGATE_BIN := $(CURDIR)/bin/ucgate

.PHONY: build run test deps vet unit fuzz e2e bench lint

build:
	$(GO) build -o bin/ucgate ./cmd/ucgate

run: build
	./bin/ucgate run

# One step after the other, in this order, even under make -j.
test:
	scripts/deps.sh
	$(GO) vet ./...
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)
	scripts/fuzz.sh
	$(MAKE) --no-print-directory e2e

deps:
	scripts/deps.sh

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)

fuzz:
	scripts/fuzz.sh

# Builds every binary under cmd/ into bin/ first, then runs the e2e tests.
e2e:
	mkdir -p bin
	$(GO) build -o bin/ ./cmd/...
	$(GO) test -count=1 -timeout $(E2E_TIMEOUT) ./e2e/...

bench:
	scripts/bench.sh

lint:
	@files=$$(gofmt -l .); if [ -n "$$files" ]; then echo "gofmt -l reports:"; echo "$$files"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
