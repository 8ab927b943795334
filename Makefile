# camagent — the front door. `make help` lists the targets.
GO        ?= go
BIN       ?= bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/camagent/camagent/version.Version=$(VERSION)
# Cross-built device binaries: name → GOOS/GOARCH/GOARM
ARCHES    := amd64:amd64: arm64:arm64: armv7:arm:7 armv6:arm:6

.PHONY: help build run test test-deps test-go test-nat test-browser test-cross test-cross-check test-abi32 test-dist test-install dist install uninstall fuzz vet bench bench-micro scale soak faults test-vm clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build camhub and camagent (pure Go) into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/camhub ./cmd/camhub
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/camagent ./cmd/camagent

run: build ## run the hub and a demo agent on the embedded defaults (Ctrl-C stops both)
	BIN=$(BIN) ./tools/run-demo.sh

test-deps: ## install what the tests need (apt: chromium, mosquitto, coturn, ffmpeg, alsa-utils, pulseaudio, qemu-user-static, …; npm: playwright-core, puppeteer-core)
	./tools/test-deps.sh

test: test-deps vet test-go test-nat test-cross test-cross-check test-abi32 test-dist test-install fuzz ## install test dependencies, then run every test
	@echo "make test: all passed"

vet: ## go vet, gofmt, and no hand-written Go file in hub/, rtc/, agent/ over 450 lines (tools/filesize.sh)
	$(GO) vet ./...
	$(GO) vet -tags nat ./nattest/
	./tools/filesize.sh
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

test-go: ## Go unit, integration and end-to-end tests (includes the headless Chromium tests)
	$(GO) test -count=1 -timeout 20m ./...

test-nat: ## hub, agent and viewer in network namespaces behind NATs: direct, TURN/UDP, no UDP at all; the short network faults (root)
	$(GO) test -count=1 -timeout 5m -tags nat -v ./nattest/
	$(GO) test -count=1 -timeout 5m -tags nat -run 'TestFaultNet' -v ./e2e/

faults: ## the fault matrix, each fault repeated FAULTS_REPEAT (20) times: recovery p50/p95 and the agent's goroutines, fds, RSS (docs/reliability.md)
	FAULTS_REPEAT=$${FAULTS_REPEAT:-20} $(GO) test -count=1 -timeout 60m $$([ "$$(id -u)" = 0 ] && echo -tags nat) -run 'TestFault' -v ./e2e/

scale: ## several hubs and fleets (docs/scaling.md): 1000 simulated devices' command round trips on the embedded broker, a 3-node NATS cluster and Debian's mosquitto (SCALE_DEVICES), 30 viewers of one publisher across 3 relaying hubs (SCALE_VIEWERS), and the channel's hub killed SCALE_KILLS (5) times under a real device and viewers; figures into bench/results.json ("scale")
	$(GO) run ./bench/scale -devices $${SCALE_DEVICES:-1000} -viewers $${SCALE_VIEWERS:-30} -kills $${SCALE_KILLS:-5} -out bench/results.json

soak: ## load held on one hub (docs/reliability.md "Soak"): SOAK_CHANNELS (200) channels, each an agent and 3 Go viewers (one talking), for SOAK_MINUTES (10), delivery, hub RSS, goroutines and CPU every minute; then SOAK_DEVICES (1000) control clients on the embedded broker and mosquitto answering a command every 5 s as long (SOAK_ONLY=media or control: one half)
	@rc=0; only=",$${SOAK_ONLY:-media,control},"; \
	case "$$only" in *,media,*) $(GO) run ./bench/soak -channels $${SOAK_CHANNELS:-200} -minutes $${SOAK_MINUTES:-10} || rc=1;; esac; \
	case "$$only" in *,control,*) $(GO) run ./bench/scale -only embedded,mosquitto -devices $${SOAK_DEVICES:-1000} -soak $${SOAK_MINUTES:-10}m -out "" || rc=1;; esac; \
	exit $$rc

test-browser: ## only the headless browser end-to-end tests (Chromium and Firefox ESR)
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
	qemu-aarch64-static $(BIN)/cross/camagent-arm64 devices
	qemu-arm-static -cpu arm1176 $(BIN)/cross/camagent-armv6 devices
	qemu-arm-static $(BIN)/cross/camagent-armv7 devices

test-abi32: ## the V4L2 ABI's struct layouts and request numbers on 32-bit systems: GOARCH=386, and arm under qemu-user
	GOARCH=386 $(GO) test -count=1 ./device/v4l2abi/ ./device/m2m/
	GOARCH=arm GOARM=6 $(GO) test -count=1 -exec 'qemu-arm-static -cpu arm1176' ./device/v4l2abi/ ./device/m2m/

test-cross-check: test-cross ## the arm64 and armv6 agents run `camagent check` under qemu-user (config, MQTT and HTTP clients)
	@set -e; for q in "qemu-aarch64-static $(BIN)/cross/camagent-arm64" "qemu-arm-static -cpu arm1176 $(BIN)/cross/camagent-armv6"; do \
	  echo "$$q check"; code=0; out=$$($$q check --mqtt tcp://127.0.0.1:9 --hub http://127.0.0.1:9 --state-dir /tmp 2>&1) || code=$$?; \
	  if [ $$code -ne 1 ] || ! echo "$$out" | grep -q '^ok   configuration' || ! echo "$$out" | grep -q '^FAIL broker'; then \
	    echo "$$out"; echo "unexpected check result (exit $$code)"; exit 1; fi; \
	done

DIST      ?= dist
# dist name → GOARCH/GOARM and the Debian architecture it is packaged for (if any)
DISTARCHES := amd64:amd64::amd64 arm64:arm64::arm64 armv7:arm:7: armv6:arm:6:armhf

dist: ## static binaries for linux/amd64, arm64, armv7, armv6 and .deb packages for amd64, arm64, armhf (ARMv6) in dist/
	@set -e; rm -rf $(DIST); for a in $(DISTARCHES); do \
	  name=$$(echo $$a | cut -d: -f1); arch=$$(echo $$a | cut -d: -f2); arm=$$(echo $$a | cut -d: -f3); deb=$$(echo $$a | cut -d: -f4); \
	  for p in camagent camhub; do \
	    echo "build $$p linux/$$name"; \
	    CGO_ENABLED=0 GOOS=linux GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/linux-$$name/$$p ./cmd/$$p; \
	  done; \
	  if [ -n "$$deb" ]; then ./packaging/mkdeb.sh $$deb $(DIST)/linux-$$name '$(VERSION)' $(DIST); fi; \
	done
	@ls -l $(DIST)/*.deb

test-dist: dist ## build the packages, install the amd64 one into a throw-away root and check all three
	DIST=$(CURDIR)/$(DIST) $(GO) test -count=1 -run 'Deb' -v ./packaging/

PREFIX    ?= /usr/local
DESTDIR   ?=
SYSCONFDIR ?= /etc
UNITDIR   ?= /lib/systemd/system

install: build ## install from source: binaries in $(PREFIX)/bin, units, sample configs (kept if present); DESTDIR, PREFIX
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/camagent
	install -m 0755 $(BIN)/camagent $(BIN)/camhub $(DESTDIR)$(PREFIX)/bin/
	@for u in camagent camhub; do \
	  sed 's|/usr/bin/|$(PREFIX)/bin/|; s|/etc/camagent/|$(SYSCONFDIR)/camagent/|' systemd/$$u.service > $(DESTDIR)$(UNITDIR)/$$u.service; \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.service; \
	  if [ -e $(DESTDIR)$(SYSCONFDIR)/camagent/$$u.yaml ]; then \
	    echo "keeping $(DESTDIR)$(SYSCONFDIR)/camagent/$$u.yaml"; \
	  else install -m 0640 systemd/$$u.yaml $(DESTDIR)$(SYSCONFDIR)/camagent/; \
	    if [ -z "$(DESTDIR)" ] && getent group $$u >/dev/null; then chgrp $$u $(SYSCONFDIR)/camagent/$$u.yaml; fi; fi; \
	done
	@echo "installed; without the package, create the users: useradd --system --user-group --groups video,audio camagent; useradd --system --user-group camhub"

test-install: build ## make install into a throw-away DESTDIR with PREFIX=/usr/local; check paths; a second install keeps an edited config
	@set -e; d=$$(mktemp -d); trap 'rm -rf $$d' EXIT; \
	$(MAKE) -s install DESTDIR=$$d PREFIX=/usr/local >/dev/null; \
	for f in usr/local/bin/camagent usr/local/bin/camhub lib/systemd/system/camagent.service lib/systemd/system/camhub.service etc/camagent/camagent.yaml etc/camagent/camhub.yaml; do \
	  test -s $$d/$$f || { echo "test-install: $$f missing"; exit 1; }; done; \
	grep -q '^ExecStart=/usr/local/bin/camagent --config /etc/camagent/camagent.yaml$$' $$d/lib/systemd/system/camagent.service; \
	echo 'fps: 25' > $$d/etc/camagent/camagent.yaml; $(MAKE) -s install DESTDIR=$$d PREFIX=/usr/local >/dev/null; \
	test "$$(cat $$d/etc/camagent/camagent.yaml)" = 'fps: 25'; \
	for f in camagent camhub; do test "$$(stat -c %a $$d/etc/camagent/$$f.yaml)" = 640 || { echo "test-install: $$f.yaml is not 0640"; exit 1; }; done; \
	$$d/usr/local/bin/camagent check --config $$d/etc/camagent/camagent.yaml --mqtt tcp://127.0.0.1:9 --hub http://127.0.0.1:9 --state-dir $$d 2>&1 | grep -q '^ok   configuration'; \
	echo "test-install: ok"

uninstall: ## remove what install installed (configs stay)
	rm -f $(DESTDIR)$(PREFIX)/bin/camagent $(DESTDIR)$(PREFIX)/bin/camhub $(DESTDIR)$(UNITDIR)/camagent.service $(DESTDIR)$(UNITDIR)/camhub.service

test-vm: test-deps ## boot Debian's kernel in qemu with vivid + snd-aloop and run camhub, camagent and a probe inside
	$(GO) test -tags vmtest -count=1 -timeout 12m -v -run TestVM ./vmtest/

fuzz: ## short runs of every fuzz target (FUZZTIME=50000x executions each by default: Go 1.26's -fuzztime with a duration can fail a clean run at its deadline, go.dev/issue/75804)
	@set -e; for spec in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$spec/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "fuzz $$spec $$f"; out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-50000x} -fuzzminimizetime 200x $$spec 2>&1) || { echo "$$out" | tail -40; exit 1; }; \
	  done; \
	done

bench: ## join, latency, hub and agent cost on loopback, camhub side by side with go2rtc and MediaMTX (BENCH_MEDIAMTX=path): one table, bench/results.json and .png (BENCH_QUICK=1: ~2 min; BENCH_ONLY=join,chromium-join,late,glass,chromium,fanout,peers,agent,audio,size)
	$(GO) run ./bench/cmd/cambench

bench-micro: ## Go micro-benchmarks of every package (go test -bench)
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean: ## remove build output
	rm -rf $(BIN) dist
