# Switchboard. `make run` serves on :3000 (development mode, demo page);
# `make test` installs what is missing and runs every test.

GO      ?= go
BIN     := .tmp/bin
ADDR    ?=
# Extra Go build tags for build, vet and test-go (none by default).
GOTAGS  ?=
GOFLAGS_TAGS := $(if $(GOTAGS),-tags '$(GOTAGS)')
# Debian packages the tests need (redis/haproxy/nginx for the cluster tests, chromium for the page,
# prometheus for promtool in test-rules, python3-socketio and what its client needs for polling and WebSocket,
# for compat-tests/python.test.js under Debian's /usr/bin/python3).
APT_PKGS := redis-server haproxy nginx chromium prometheus python3-socketio python3-engineio python3-websocket python3-requests

.PHONY: all build run cluster bench test vendor-client deps deps-apt deps-node deps-go test-go test-fuzz test-node test-cluster test-browser test-rules vet clean

all: build

build:
	$(GO) build $(GOFLAGS_TAGS) -o $(BIN)/switchboard ./cmd/switchboard
	$(GO) build $(GOFLAGS_TAGS) -o $(BIN)/example-embed ./cmd/example-embed
	$(GO) build $(GOFLAGS_TAGS) -o $(BIN)/example-chat ./cmd/example-chat
	$(GO) build $(GOFLAGS_TAGS) -o $(BIN)/protocol-server ./cmd/protocol-server

run: build
	LOG_FORMAT=$${LOG_FORMAT:-console} $(if $(ADDR),ADDR=$(ADDR)) $(BIN)/switchboard

# The socket.io-client browser bundle served under SOCKETIO_PATH (SERVE_CLIENT), from the version in
# package-lock.json: run after changing that version (a Go test checks that they match).
CLIENT_DIST := server/clientbundle/dist
vendor-client: deps-node
	cp node_modules/socket.io-client/dist/socket.io*.js node_modules/socket.io-client/dist/socket.io*.map $(CLIENT_DIST)/
	node -p 'require("./node_modules/socket.io-client/package.json").version' > $(CLIENT_DIST)/VERSION

# Redis, three nodes and HAProxy on loopback, for people to try (Ctrl-C stops all).
cluster: build
	SWITCHBOARD_BIN=$(CURDIR)/$(BIN)/switchboard deploy/cluster.sh

# Benchmarks against the Node socket.io reference (not part of `make test`).
# `make bench BENCH_ARGS=--quick` for a short run.
bench:
	bash compat-tests/bench/run-bench.sh $(BENCH_ARGS)

deps: deps-apt deps-node deps-go

# Installs missing Debian packages when run as root (CI, fresh machines);
# otherwise says what is missing.
deps-apt:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	for m in socketio:python3-socketio engineio:python3-engineio websocket:python3-websocket requests:python3-requests; do \
		/usr/bin/python3 -c "import $${m%%:*}" >/dev/null 2>&1 || missing="$$missing $${m#*:}"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "missing Debian packages:$$missing (run as root or: sudo apt-get install$$missing)"; exit 1; \
	fi

deps-node:
	npm ci --no-audit --no-fund

deps-go:
	$(GO) mod download

vet:
	$(GO) vet $(GOFLAGS_TAGS) ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# The Prometheus alerting rules and their unit tests (deploy/prometheus).
test-rules:
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/*test*.yml

# Tests that need Redis fail (not skip) when redis-server is missing.
test-go:
	SWITCHBOARD_REQUIRE_REDIS=1 $(GO) test $(GOFLAGS_TAGS) -race -count=1 ./...

# A short run of every fuzz target (their seed corpora also run in test-go).
# FUZZTIME=5m for a longer look.
FUZZTIME ?= 4s
FUZZ_TARGETS := \
	./internal/engine/eioparser:FuzzDecodePacket ./internal/engine/eioparser:FuzzDecodePayload ./internal/engine/eioparser:FuzzDecodePayloadV3 \
	./internal/engine/sioparser:FuzzSocketIODecode ./internal/engine/sioparser:FuzzJSON \
	./internal/engine/msgpackparser:FuzzDecode \
	./internal/engine/eio:FuzzPollingPost ./internal/engine/eio:FuzzWebSocketFrames \
	./internal/clientip:FuzzClientIP \
	./adapter:FuzzRedisBroadcast ./adapter:FuzzRedisRequest ./adapter:FuzzRedisResponse ./adapter:FuzzStreamEntry \
	./server:FuzzAPIBody
# Go's fuzzing engine sometimes ends a run with a bare "context deadline exceeded" (no failing input) when the
# time runs out while a worker is busy with a new input: that run is repeated once; a real failure writes its input.
fuzz_once = $(GO) test $(GOFLAGS_TAGS) -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg >.tmp/fuzz.log 2>&1
test-fuzz:
	@mkdir -p .tmp; set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		$(fuzz_once) || { grep -q 'context deadline exceeded' .tmp/fuzz.log && ! grep -q 'Failing input' .tmp/fuzz.log && \
			echo "  (the engine's deadline flake: once more)" && $(fuzz_once); } || \
		{ grep -v '^fuzz: elapsed' .tmp/fuzz.log | tail -40; exit 1; }; done

test-node: build
	SWITCHBOARD_BIN=$(CURDIR)/$(BIN)/switchboard EXAMPLE_BIN=$(CURDIR)/$(BIN)/example-embed EXAMPLE_CHAT_BIN=$(CURDIR)/$(BIN)/example-chat PROTOCOL_SERVER_BIN=$(CURDIR)/$(BIN)/protocol-server npm test

test-cluster: build
	SWITCHBOARD_BIN=$(CURDIR)/$(BIN)/switchboard npm run test:cluster

test-browser: build
	SWITCHBOARD_BIN=$(CURDIR)/$(BIN)/switchboard npm run test:browser

test: deps vet test-rules test-go test-fuzz test-node test-cluster test-browser

clean:
	rm -rf .tmp bin
