# camagent — the front door. `make help` lists the targets.
GO        ?= go
BIN       ?= bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/camagent/camagent/version.Version=$(VERSION)
# Cross-built device binaries: name → GOOS/GOARCH/GOARM
ARCHES    := amd64:amd64: arm64:arm64: armv7:arm:7 armv6:arm:6

.PHONY: help build run test test-deps test-go test-browser test-cross fuzz vet bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build camhub and camagent (pure Go) into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/camhub ./cmd/camhub
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/camagent ./cmd/camagent

run: build ## run the hub and a demo agent on the embedded defaults (Ctrl-C stops both)
	BIN=$(BIN) ./tools/run-demo.sh

test-deps: ## install what the tests need (apt: chromium, mosquitto, ffmpeg, alsa-utils, qemu-user-static; npm: playwright-core)
	./tools/test-deps.sh

test: test-deps vet test-go test-cross fuzz ## install test dependencies, then run every test
	@echo "make test: all passed"

vet: ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

test-go: ## Go unit, integration and end-to-end tests (includes the headless Chromium tests)
	$(GO) test -count=1 -timeout 20m ./...

test-browser: ## only the headless Chromium end-to-end tests
	$(GO) test -count=1 -timeout 10m -run Browser -v ./e2e/

test-cross: ## CGO_ENABLED=0 device builds for amd64, arm64, armv7, armv6; run them under qemu-user
	@set -e; for a in $(ARCHES); do \
	  name=$${a%%:*}; rest=$${a#*:}; arch=$${rest%%:*}; arm=$${rest#*:}; \
	  echo "build camagent linux/$$name"; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/cross/camagent-$$name ./cmd/camagent; \
	done
	qemu-aarch64-static $(BIN)/cross/camagent-arm64 version
	qemu-arm-static -cpu arm1176 $(BIN)/cross/camagent-armv6 version
	qemu-arm-static $(BIN)/cross/camagent-armv7 version

fuzz: ## short runs of every fuzz target (FUZZTIME=10s each by default)
	@set -e; for spec in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$spec/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "fuzz $$spec $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-10s} $$spec >/dev/null; \
	  done; \
	done

bench: ## benchmarks (prints figures)
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean: ## remove build output
	rm -rf $(BIN) dist
