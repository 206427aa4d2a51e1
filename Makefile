# ucgate build, test and benchmark entry points.
#
#   make build   bin/ucgate
#   make run     the gateway with its embedded default config (data in ./data)
#   make test    deps, vet, unit tests (-race), short fuzz runs, e2e tests
#   make bench   scripts/bench.sh (BENCH_QUICK=1 for a short run)
#   make lint    gofmt, go vet, staticcheck
#   make proto   regenerate the plugin contract (plugins/sdk/pb, plugins/irc)

GO ?= go
# staticcheck 2026.2.2, built with the local Go toolchain (supports go1.26).
STATICCHECK_VERSION ?= v0.8.2
E2E_TIMEOUT ?= 15m
# The Go protoc plugins the checked-in plugin contract is generated with.
PROTOC_GEN_GO_VERSION ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.0

# e2e tests find the gateway binary here (e2e/harness.GatewayBinary).
export UCGATE_BIN := $(CURDIR)/bin/ucgate

.PHONY: build run test deps vet unit fuzz e2e bench lint softphone proto

build: softphone
	$(GO) build -o bin/ucgate ./cmd/ucgate

# The browser softphone (web/softphone, JsSIP from npm) bundled by esbuild
# into cmd/ucgate/softphone/build, which the binary embeds. A plain
# `go build` without it serves a placeholder page.
softphone:
	cd web/softphone && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

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
e2e: softphone
	mkdir -p bin
	$(GO) build -o bin/ ./cmd/...
	$(GO) test -count=1 -timeout $(E2E_TIMEOUT) ./e2e/...

bench:
	scripts/bench.sh

lint:
	@files=$$(gofmt -l .); if [ -n "$$files" ]; then echo "gofmt -l reports:"; echo "$$files"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# The plugin contract: Debian's protoc (protobuf-compiler) with the Go
# plugins at pinned versions (installed into bin/tools), and the Python
# stubs of the IRC example (Debian's grpc_python_plugin, protobuf-compiler-grpc).
proto:
	mkdir -p bin/tools
	GOBIN=$(CURDIR)/bin/tools $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(CURDIR)/bin/tools $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH=$(CURDIR)/bin/tools:$$PATH protoc -I plugins/sdk/proto \
		--go_out=plugins/sdk/pb --go_opt=paths=source_relative \
		--go-grpc_out=plugins/sdk/pb --go-grpc_opt=paths=source_relative \
		plugins/sdk/proto/plugin.proto
	protoc -I plugins/sdk/proto -I plugins/irc/proto \
		--python_out=plugins/irc --grpc_out=plugins/irc \
		--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin \
		plugins/sdk/proto/plugin.proto plugins/irc/proto/health.proto plugins/irc/proto/controller.proto
