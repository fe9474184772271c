# mailintake — build, run and test. `make help` lists the targets.

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TOOLS := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)

BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
STATICCHECK_VERSION := v0.8.2

LISTEN ?= 127.0.0.1:7465
HTTP_LISTEN ?= 127.0.0.1:7466
DATA_DIR ?= data
CORPUS ?= ../shared/corpus

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the server, the CLI and the built-in auth plugins into bin/.
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./server/cmd/mailintaked ./client/cmd/mailintake ./plugins/basic/cmd/mailintake-auth-basic ./plugins/o365/cmd/mailintake-auth-o365 ./plugins/google/cmd/mailintake-auth-google

.PHONY: run
run: build ## Build, then serve the API on $(LISTEN) and the admin web page on $(HTTP_LISTEN), with the embedded store in $(DATA_DIR).
	@echo "The admin web page: http://$(HTTP_LISTEN)/ (sign in with the admin token in $(DATA_DIR)/admin.token)"
	$(BIN)/mailintaked --listen $(LISTEN) --http-listen $(HTTP_LISTEN) --data-dir $(DATA_DIR)

.PHONY: test-ui
test-ui: ## Drive the admin web page in headless Chromium (Debian's chromium) against the real daemon and an in-process IMAP server; SCREENSHOTS=docs/web keeps screenshots.
	$(if $(SCREENSHOTS),MAILINTAKE_SCREENSHOTS=$(abspath $(SCREENSHOTS))) $(GO) test -count=1 -tags browser -run Browser -timeout 10m ./server/cmd/mailintaked/ $(if $(V),-v)

# The provider SDK and the example provider are Go modules of their own: ./... of the server's
# module does not reach them.
SDK := plugins/authplugin
SDK_EXAMPLE := plugins/examples/statictoken

.PHONY: test
test: ## Run the unit and integration tests (with the race detector, and internal/offheap's buffers poisoned once given back), the server's and the provider SDK's.
	MAILINTAKE_OFFHEAP_POISON=1 $(GO) test -race -count=1 ./...
	cd $(SDK) && $(GO) test -race -count=1 ./...

.PHONY: dev-idp
dev-idp: ## Serve the fake Microsoft identity platform on 127.0.0.1:7470 (and a fake Google under /google) for trying the o365 and google providers.
	$(GO) run ./internal/fakes/idp/cmd/mailintake-dev-idp

.PHONY: imap-servers
imap-servers: ## Install the interop suite's IMAP servers besides Dovecot into .tools/: mox (Go module proxy) and Courier (Debian's packages, unpacked).
	.ci/install-mox
	.ci/install-courier

.PHONY: test-interop
test-interop: imap-servers ## Run the interop suite against private Dovecot (IMAP, POP3, submission), Courier and mox servers (needs dovecot-imapd, dovecot-pop3d and dovecot-submissiond installed).
	$(GO) test -race -count=1 -tags interop -timeout 5m ./internal/fakes/mox/ ./internal/fakes/courier/ ./internal/fakes/dovecot/
	MAILINTAKE_OFFHEAP_POISON=1 $(GO) test -race -count=1 -tags interop -run Interop -timeout 15m ./server/cmd/mailintaked/

.PHONY: test-postgres
test-postgres: ## Run the store conformance suite and the PostgreSQL store's own tests on a private PostgreSQL (installs Debian's postgresql if missing).
	.ci/install-postgres
	$(GO) test -race -count=1 -tags postgres -timeout 10m ./internal/store/...

.PHONY: test-ha
test-ha: ## Run the high-availability suite: three replicas on a private PostgreSQL against a private Dovecot, with failover, handover and chaos, POP3 mailboxes too (needs dovecot-imapd, dovecot-pop3d and postgresql installed).
	.ci/install-postgres
	$(GO) test -count=1 -tags ha -run HA -timeout 20m ./server/cmd/mailintaked/ $(if $(V),-v)

.PHONY: test-faults
test-faults: ## Run the fault-injection suite against a private Dovecot, and its SIGKILL scenario also on a private PostgreSQL (needs dovecot-imapd and postgresql installed).
	.ci/install-postgres
	$(GO) test -count=1 -tags faults -run Fault -timeout 15m ./server/cmd/mailintaked/ $(if $(V),-v)

.PHONY: bench
bench: ## Measure wall time and CPU of the IMAP floor, mbsync, mailintake (Go client, CLI) and the baseline release run by run, many mailboxes at once, the other peers, push latency, idle scale, replicas and parsing, on a private Dovecot; writes BENCHMARKS.md (MAILINTAKE_BENCH_* sizes: internal/bench/bench_test.go). Not part of make test.
	@command -v dovecot >/dev/null || { echo "make bench needs Dovecot: apt-get install dovecot-imapd (and isync getmail6 fetchmail offlineimap for the peers)"; exit 1; }
	.ci/install-postgres
	$(GO) test -count=1 -tags bench -run TestBench -timeout 90m -v ./internal/bench/

.PHONY: bench-parse
bench-parse: ## Go benchmarks of the parser against go-message's bare walk.
	$(GO) test -run XXX -bench . -benchmem ./internal/parse/

.PHONY: fuzz
fuzz: ## Run each fuzz target (parser, TNEF, API requests) for FUZZTIME (default 10m).
	for f in FuzzParse FuzzSplitReply FuzzOpenPart FuzzHTMLToText FuzzBase64 FuzzBounceNotice FuzzReportFields FuzzMultipart FuzzQP; do $(GO) test -run XXX -fuzz $$f -fuzztime $(or $(FUZZTIME),10m) ./internal/parse/ || exit 1; done
	$(GO) test -run XXX -fuzz '^FuzzContentFingerprint$$' -fuzztime $(or $(FUZZTIME),10m) ./internal/parse/
	$(GO) test -run XXX -fuzz FuzzDecode -fuzztime $(or $(FUZZTIME),10m) ./internal/tnef/
	for f in FuzzResponseLine FuzzList FuzzBody FuzzDotRoundTrip; do $(GO) test -run XXX -fuzz "^$$f\$$" -fuzztime $(or $(FUZZTIME),10m) ./internal/pop3/ || exit 1; done
	$(GO) test -run XXX -fuzz FuzzRequests -fuzztime $(or $(FUZZTIME),10m) ./server/

.PHONY: corpus-check
corpus-check: ## Run the parser over a real-world corpus: make corpus-check CORPUS=../shared/corpus [BOUNCES=DIR, checked out by internal/tools/corpuscheck/fetch-bounces.sh DIR] [V=1].
	$(GO) run ./internal/tools/corpuscheck -corpus $(CORPUS) $(if $(BOUNCES),-bounces $(BOUNCES)) $(if $(V),-v)

.PHONY: proto
proto: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc ## Regenerate the protobuf and gRPC code (authplugin.v1's into the SDK module, $(SDK)/authpluginv1).
	$(TOOLS)/buf generate

.PHONY: lint
lint: $(TOOLS)/buf $(TOOLS)/staticcheck proto ## go vet, staticcheck, buf lint, and a check that generated code is current.
	$(GO) vet ./...
	cd $(SDK) && $(GO) vet ./...
	cd $(SDK_EXAMPLE) && $(GO) vet ./...
	$(GO) vet -tags interop,faults,ha,browser ./server/cmd/mailintaked/
	$(GO) vet -tags interop ./internal/fakes/...
	$(GO) vet -tags postgres ./internal/store/...
	$(GO) vet -tags bench ./internal/bench/
	$(TOOLS)/staticcheck ./...
	cd $(SDK) && $(TOOLS)/staticcheck ./...
	cd $(SDK_EXAMPLE) && $(TOOLS)/staticcheck ./...
	@cd $(SDK) && $(GO) mod tidy -diff || { echo "$(SDK)/go.mod is not tidy: run 'go mod tidy' there"; exit 1; }
	@cd $(SDK_EXAMPLE) && $(GO) mod tidy -diff || { echo "$(SDK_EXAMPLE)/go.mod is not tidy: run 'go mod tidy' there"; exit 1; }
	$(TOOLS)/staticcheck -tags interop,faults,ha,browser ./server/cmd/mailintaked/
	$(TOOLS)/staticcheck -tags interop ./internal/fakes/...
	$(TOOLS)/staticcheck -tags postgres ./internal/store/...
	$(TOOLS)/staticcheck -tags bench ./internal/bench/
	$(TOOLS)/buf lint
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@git diff --exit-code -- proto $(SDK)/authpluginv1 || { echo "generated code is out of date: run 'make proto' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto $(SDK)/authpluginv1)" || { git status --porcelain -- proto $(SDK)/authpluginv1; echo "generated code is out of date: run 'make proto' and commit"; exit 1; }

.PHONY: tools
tools: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc $(TOOLS)/staticcheck ## Install the pinned code generators and linters into .tools/bin.

$(TOOLS)/buf:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

.PHONY: clean
clean: ## Remove build output.
	rm -rf $(BIN)
