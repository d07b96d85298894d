# autodeploy. The two commands a newcomer needs:
#   make demo   start the local demo cluster and run autodeploy against it
#   make test   every test: unit, then integration on a real local cluster
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/autodeploy-dev/autodeploy/internal/version.Version=$(VERSION) \
	-X github.com/autodeploy-dev/autodeploy/internal/version.Commit=$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown) \
	-X github.com/autodeploy-dev/autodeploy/internal/version.Date=$(shell date -u +%Y-%m-%dT%H:%M:%SZ)
CACHE ?= $(or $(AUTODEPLOY_CACHE),$(HOME)/.cache/autodeploy)
CLUSTER_DIR ?= $(CACHE)/cluster
# The seed's production cluster is k3s v1.28.5: Kubernetes 1.28 on kine.
SEED_K8S_VERSION := v1.28.15
CLUSTER_DIR_128 ?= $(CACHE)/cluster-1.28

.PHONY: all build man release test-release test test-unit test-integration test-integration-128 bench bench-compare testbin testbin-128 cluster-up cluster-down cluster-up-128 cluster-down-128 demo lint fmt tidy golden-update clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/autodeploy ./cmd/autodeploy

# Man pages, one per command, from the same tree as --help:
#   man -l bin/man/autodeploy-run.1
man:
	$(GO) run ./scripts/man bin/man

# Release artifacts into dist/: static binaries for linux/amd64, arm64 and
# armv7 in tarballs and .debs, a multi-arch OCI image, SHA256SUMS. Stamped
# and dated from the commit: rebuilding a commit gives the same bytes.
release:
	rm -rf dist
	$(GO) run ./scripts/release -o dist -version $(VERSION)

# Builds a release twice (same bytes?) into a temp dir and tests it: the
# tarballs, the image, and the .deb's install, upgrade, remove and purge
# with dpkg --root (needs root and dpkg). make test runs it too.
test-release:
	$(GO) test -count=1 -tags release -timeout 30m ./scripts/release

# Everything: builds the control-plane binaries if missing, runs unit tests,
# then the integration tests on Kubernetes v1.37.2/etcd and on v1.28.15/kine
# (the seed's k3s), each on the running cluster or one it starts and stops.
test:
	scripts/test.sh

# Unit tests only: no cluster, seconds.
test-unit:
	$(GO) test ./...

# Integration tests against the cluster of `make cluster-up` (v1.37.2 on
# etcd), or of `make cluster-up-128` (v1.28.15 on kine).
test-integration:
	AUTODEPLOY_TEST_KUBECONFIG=$(CLUSTER_DIR)/kubeconfig $(GO) test -count=1 -tags integration ./...

test-integration-128:
	AUTODEPLOY_TEST_KUBECONFIG=$(CLUSTER_DIR_128)/kubeconfig $(GO) test -count=1 -tags integration ./...

# Benchmarks: the pure parts, then a no-op run with 3 and 500 services and a
# deploy with and without Flux GitOps on
# the cluster of `make cluster-up`.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...
	AUTODEPLOY_TEST_KUBECONFIG=$(CLUSTER_DIR)/kubeconfig $(GO) test -tags integration -run '^$$' -bench 'NoopRun|DeployGitOps' -benchtime 5x ./internal/deploy

# autodeploy against the seed's bash algorithm on a cluster of its own
# (several minutes: the bash baseline runs ~2000 kubectl processes at 500
# services); writes scripts/bench/RESULTS.md.
bench-compare: build testbin
	$(GO) run ./scripts/bench --autodeploy bin/autodeploy > scripts/bench/RESULTS.md.tmp && mv scripts/bench/RESULTS.md.tmp scripts/bench/RESULTS.md

testbin:
	scripts/testbin/build.sh >/dev/null

testbin-128:
	K8S_VERSION=$(SEED_K8S_VERSION) DATASTORE=kine scripts/testbin/build.sh >/dev/null

cluster-up: testbin
	@$(GO) run ./scripts/cluster up --dir $(CLUSTER_DIR)

cluster-down:
	@$(GO) run ./scripts/cluster down --dir $(CLUSTER_DIR)

# The seed's kind of cluster: Kubernetes 1.28 on kine, as k3s v1.28.5 runs.
cluster-up-128: testbin-128
	@$(GO) run ./scripts/cluster up --dir $(CLUSTER_DIR_128) --k8s-version $(SEED_K8S_VERSION) --datastore kine

cluster-down-128:
	@$(GO) run ./scripts/cluster down --dir $(CLUSTER_DIR_128)

demo: build testbin
	scripts/demo.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) vet -tags release ./scripts/release

fmt:
	gofmt -w $$(git ls-files '*.go')

tidy:
	$(GO) mod tidy

golden-update:
	$(GO) test ./... -update

clean:
	rm -rf bin dist
