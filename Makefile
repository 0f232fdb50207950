# Barfinex Notifier. `make run` starts a local stack; `make test` runs every
# test and static check. Tools are pinned here and built into bin/.

TEMPORAL_CLI_VERSION  := v1.5.1
STATICCHECK_VERSION   := v0.8.2
WORKFLOWCHECK_VERSION := v0.6.0
# Temporal's own server and SQL schema tool, for e2e-temporal-postgres.
TEMPORAL_SERVER_VERSION := v1.32.1

BIN := $(CURDIR)/bin
export GOBIN := $(BIN)

# Packages whose tests run goroutines against each other get the race
# detector; the rest run without it, which keeps `make test` quick.
RACE_PKGS := ./activities/... ./apiserver/... ./sqlstore/... ./cmd/...

.PHONY: run build test lint unit fuzz faults histories bench bench-backlog e2e-temporal-postgres tools clean

## run: start a Temporal dev server, the API and a worker (Ctrl-C stops all)
run: build $(BIN)/temporal
	@./scripts/run

## build: build bin/notifier
build:
	go build -o $(BIN)/notifier ./cmd/notifier

## test: static checks, then every test (a real Temporal dev server included),
## then a short run of each fuzz target
test: lint unit fuzz

lint: $(BIN)/staticcheck $(BIN)/workflowcheck
	go vet ./...
	$(BIN)/staticcheck ./...
	$(BIN)/workflowcheck ./workflows/...

unit: $(BIN)/temporal
	NOTIFIER_TEST_TEMPORAL_CLI=$(BIN)/temporal go test -count=1 -race $(RACE_PKGS)
	NOTIFIER_TEST_TEMPORAL_CLI=$(BIN)/temporal go test -count=1 \
		$(filter-out $(shell go list $(RACE_PKGS)),$(shell go list ./...))

FUZZTIME ?= 10s

## fuzz: run each fuzz target for FUZZTIME beyond its corpus
fuzz: $(BIN)/temporal
	NOTIFIER_TEST_TEMPORAL_CLI=$(BIN)/temporal go test -run='^$$' -fuzz=FuzzPublishEvent -fuzztime=$(FUZZTIME) ./apiserver/
	NOTIFIER_TEST_TEMPORAL_CLI=$(BIN)/temporal go test -run='^$$' -fuzz=FuzzCreateWebhook -fuzztime=$(FUZZTIME) ./apiserver/

## faults: the fault suite (not part of `make test`; a few minutes): load on
## the notifier's processes while they are killed, Temporal restarts and
## receivers fail; prints what was published, delivered, duplicated and lost
faults: $(BIN)/temporal
	NOTIFIER_TEST_TEMPORAL_CLI=$(BIN)/temporal go test -count=1 -tags faults -v \
		-timeout 30m -run '^TestFaults$$' ./cmd/notifier/

## histories: capture workflow histories from the end-to-end tests for the
## replay test; run after a deliberate, compatible change to a workflow
histories: $(BIN)/temporal
	mkdir -p workflows/testdata/histories
	NOTIFIER_TEST_TEMPORAL_CLI=$(BIN)/temporal \
	NOTIFIER_CAPTURE_HISTORIES=$(CURDIR)/workflows/testdata/histories \
		go test -count=1 -run 'TestEndToEnd' ./cmd/notifier/

## bench: throughput and latency of the notifier against the naive Temporal
## shape and a plain worker pool, on a dev server of its own (not part of
## `make test`; about 5 minutes); BENCH_EVENTS sets the events per row
bench: build $(BIN)/temporal
	go build -o $(BIN)/bench ./cmd/bench
	$(BIN)/bench throughput

## bench-backlog: memory of the worker and the server with BENCH_BACKLOG
## (10 000) deliveries waiting in backoff against a dead receiver
bench-backlog: build $(BIN)/temporal
	go build -o $(BIN)/bench ./cmd/bench
	$(BIN)/bench backlog

## e2e-temporal-postgres: the end-to-end tests on Temporal's own server on the
## local PostgreSQL (not part of `make test`; the first build takes minutes)
e2e-temporal-postgres: $(BIN)/temporal $(BIN)/temporal-server $(BIN)/temporal-sql-tool
	TEMPORAL_SERVER_VERSION=$(TEMPORAL_SERVER_VERSION) ./scripts/e2e-temporal-postgres

$(BIN)/temporal-server: $(BIN)/.temporal-server-$(TEMPORAL_SERVER_VERSION)
$(BIN)/.temporal-server-$(TEMPORAL_SERVER_VERSION):
	go install go.temporal.io/server/cmd/server@$(TEMPORAL_SERVER_VERSION)
	mv $(BIN)/server $(BIN)/temporal-server
	@rm -f $(BIN)/.temporal-server-* && touch $@

$(BIN)/temporal-sql-tool: $(BIN)/.temporal-sql-tool-$(TEMPORAL_SERVER_VERSION)
$(BIN)/.temporal-sql-tool-$(TEMPORAL_SERVER_VERSION):
	go install go.temporal.io/server/cmd/tools/sql@$(TEMPORAL_SERVER_VERSION)
	mv $(BIN)/sql $(BIN)/temporal-sql-tool
	@rm -f $(BIN)/.temporal-sql-tool-* && touch $@

tools: $(BIN)/temporal $(BIN)/staticcheck $(BIN)/workflowcheck

# Each tool is rebuilt when its pinned version changes.
$(BIN)/temporal: $(BIN)/.temporal-$(TEMPORAL_CLI_VERSION)
$(BIN)/.temporal-$(TEMPORAL_CLI_VERSION):
	@echo "building the Temporal CLI $(TEMPORAL_CLI_VERSION) (a few minutes the first time)"
	go install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)
	@rm -f $(BIN)/.temporal-* && touch $@

$(BIN)/staticcheck: $(BIN)/.staticcheck-$(STATICCHECK_VERSION)
$(BIN)/.staticcheck-$(STATICCHECK_VERSION):
	go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@rm -f $(BIN)/.staticcheck-* && touch $@

$(BIN)/workflowcheck: $(BIN)/.workflowcheck-$(WORKFLOWCHECK_VERSION)
$(BIN)/.workflowcheck-$(WORKFLOWCHECK_VERSION):
	go install go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION)
	@rm -f $(BIN)/.workflowcheck-* && touch $@

clean:
	rm -rf $(BIN)
