#!/usr/bin/env bash
# The README's test command (make test): lint, unit tests, the release
# artifacts (scripts/release), then integration tests on a real local
# cluster. Builds the control-plane binaries when missing (~14 min cold),
# reuses a cluster started by `make cluster-up`, otherwise starts one and
# stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${AUTODEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autodeploy}
dir=${CLUSTER_DIR:-$cache/cluster}
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

echo "== test cluster"
go build -o bin/cluster ./scripts/cluster
if bin/cluster status --dir "$dir"; then
	echo "reusing the running cluster in $dir"
else
	bin/cluster up --dir "$dir" >/dev/null
	trap 'bin/cluster down --dir "$dir"' EXIT
fi

echo "== integration tests"
AUTODEPLOY_TEST_KUBECONFIG="$dir/kubeconfig" go test -count=1 -tags integration -timeout 30m ./...
