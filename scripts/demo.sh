#!/usr/bin/env bash
# make demo: start the local cluster (building its binaries if missing) and
# show autodeploy at work on the seed's three services.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${AUTODEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autodeploy}
dir=${CLUSTER_DIR:-$cache/cluster}
scripts/testbin/build.sh >/dev/null
go build -o bin/cluster ./scripts/cluster
bin/cluster up --dir "$dir" >/dev/null
go run ./scripts/demo --kubeconfig "$dir/kubeconfig" --autodeploy bin/autodeploy --dir "$cache/demo"
