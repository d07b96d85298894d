#!/usr/bin/env bash
# The README's test command (make test): lint, unit tests, the release
# artifacts (scripts/release), then the integration tests twice, on real
# local clusters, one after the other (2 cores):
#   1. Kubernetes v1.37.2 on etcd: the newest Kubernetes;
#   2. Kubernetes v1.28.15 on kine (SQLite): where the seed runs, k3s v1.28.5.
# Builds the control-plane binaries when missing (~16 + ~14 min cold),
# reuses a cluster started by `make cluster-up` / `make cluster-up-128`,
# otherwise starts one and stops it once its tests are done.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${AUTODEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autodeploy}
dir=${CLUSTER_DIR:-$cache/cluster}
seed_dir=${CLUSTER_DIR_128:-$cache/cluster-1.28}
seed_version=v1.28.15 # testcluster.SeedK8sVersion
mkdir -p bin

echo "== lint"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted" >&2; exit 1; fi
go vet ./...
go vet -tags integration ./...
go vet -tags release ./scripts/release

echo "== unit tests"
go test -count=1 ./...

# Built, checked and thrown away, never published: the release must not rot
# between releases. About 2 minutes with a warm build cache.
echo "== release artifacts"
go test -count=1 -tags release -timeout 30m ./scripts/release

echo "== control-plane binaries"
scripts/testbin/build.sh
K8S_VERSION=$seed_version DATASTORE=kine scripts/testbin/build.sh

go build -o bin/cluster ./scripts/cluster
started=()
stop_started() {
	for d in ${started[@]+"${started[@]}"}; do bin/cluster down --dir "$d"; done
	started=()
}
trap stop_started EXIT

# integration NAME DIR CLUSTER-FLAGS...: the whole suite on one cluster.
# A failure is remembered, not fatal, so that both clusters are tested.
failed=()
integration() {
	local name=$1 d=$2
	shift 2
	echo "== integration tests: $name"
	if bin/cluster status --dir "$d" "$@"; then
		echo "reusing the running cluster in $d"
	else
		bin/cluster up --dir "$d" "$@" >/dev/null
		started+=("$d")
	fi
	local t0=$SECONDS
	if ! AUTODEPLOY_TEST_KUBECONFIG="$d/kubeconfig" go test -count=1 -tags integration -timeout 30m ./...; then
		failed+=("$name")
	fi
	echo "== integration tests: $name took $((SECONDS - t0)) s"
	stop_started
}
integration "Kubernetes v1.37.2 on etcd" "$dir" --k8s-version v1.37.2 --datastore etcd
integration "Kubernetes $seed_version on kine (the seed's k3s)" "$seed_dir" --k8s-version "$seed_version" --datastore kine

if [ ${#failed[@]} -gt 0 ]; then
	printf 'integration tests failed on: %s\n' "${failed[@]}" >&2
	exit 1
fi
