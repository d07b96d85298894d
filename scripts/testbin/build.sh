#!/usr/bin/env bash
# Builds the control-plane binaries the test cluster runs (kube-apiserver,
# kube-controller-manager, kube-scheduler, the datastore: etcd or kine, and
# kwok) from Go modules into a cache directory keyed by Kubernetes version,
# outside the repository. Only what is missing is built; a lock keeps two
# builds of a version from running at once (a cold build takes ~14 minutes
# on 2 cores and several GB of build cache).
#
# Usage:
#   scripts/testbin/build.sh                                      # v1.37.2 on etcd; prints the bin directory
#   K8S_VERSION=v1.28.15 DATASTORE=kine scripts/testbin/build.sh  # the seed's k3s: Kubernetes 1.28 on kine
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
# k8s.io/kubernetes v1.X.Y publishes its staging modules (k8s.io/api, ...) as v0.X.Y.
STAGING_VERSION=${STAGING_VERSION:-v0.${K8S_VERSION#v1.}}
DATASTORE=${DATASTORE:-etcd}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
# kine is k3s's datastore: the etcd API over SQLite. k3s's release notes
# list kine v0.10.3 in Sep-Nov 2023 (v1.27.6, v1.25.15) and v0.11.8 in May
# 2024 (v1.30.0); v0.11.2 (2023-12-07) is the newest kine the module proxy
# serves from the month of the seed's k3s v1.28.5 (December 2023; the
# exact version that k3s release embeds was not checked).
KINE_VERSION=${KINE_VERSION:-v0.11.2}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
case $DATASTORE in
etcd | kine) ;;
*) echo "testbin: DATASTORE=$DATASTORE: use etcd or kine" >&2; exit 2 ;;
esac

cache=${AUTODEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autodeploy}
root="$cache/testbin/$K8S_VERSION"
bin="$root/bin"
mkdir -p "$bin" "$root/src"

exec 9>"$root/.build.lock"
if ! flock -n 9; then
	echo "testbin: another build holds $root/.build.lock, waiting for it" >&2
	flock 9
fi

log() { echo "testbin: $*" >&2; }

build_etcd() {
	[ -x "$bin/etcd" ] && return
	log "building etcd $ETCD_VERSION"
	local src="$root/src/etcd"
	rm -rf "$src" && mkdir -p "$src"
	# etcd's server module has replace directives of its own, which only count
	# in its own go.mod, so it is built through this wrapper module.
	cat >"$src/go.mod" <<MOD
module autodeploy.local/testbin/etcd

go 1.26
MOD
	cat >"$src/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3/etcdmain"
GO
	(cd "$src" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy)
	(cd "$src" && go build -trimpath -ldflags='-s -w' -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3)
	mv "$bin/etcd.tmp" "$bin/etcd"
}

build_kine() {
	[ -x "$bin/kine" ] && return
	log "building kine $KINE_VERSION"
	# kine's own build (scripts/build in its module) compiles SQLite with
	# these flags; cgo is needed for github.com/mattn/go-sqlite3. Without the
	# nats tag: the tests use SQLite only, as k3s does by default.
	CGO_ENABLED=1 CGO_CFLAGS="-DSQLITE_ENABLE_DBSTAT_VTAB=1 -DSQLITE_USE_ALLOCA=1" GOBIN="$bin" \
		go install -trimpath -ldflags="-s -w -X github.com/k3s-io/kine/pkg/version.Version=$KINE_VERSION" "github.com/k3s-io/kine@$KINE_VERSION"
}

build_kwok() {
	[ -x "$bin/kwok" ] && return
	log "building kwok $KWOK_VERSION"
	GOBIN="$bin" go install -trimpath -ldflags='-s -w' "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
	# The stage definitions ship in the same module; keep the version's copy.
	local mod
	mod=$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION
	mkdir -p "$root/kwok-stages"
	cp "$mod"/kustomize/stage/node/fast/*.yaml "$mod"/kustomize/stage/node/heartbeat-with-lease/*.yaml \
		"$mod"/kustomize/stage/pod/fast/*.yaml "$root/kwok-stages/" 2>/dev/null || true
	chmod -R u+w "$root/kwok-stages"
}

build_kube() {
	local missing=()
	for c in kube-apiserver kube-controller-manager kube-scheduler; do
		[ -x "$bin/$c" ] || missing+=("$c")
	done
	[ ${#missing[@]} -eq 0 ] && return
	log "building ${missing[*]} $K8S_VERSION (cold: ~12 min on 2 cores)"
	local src="$root/src/kubernetes"
	mkdir -p "$src"
	if [ ! -f "$src/go.sum" ]; then
		local info gomod gover=""
		info=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION")
		gomod=$(echo "$info" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
		# The Go release this Kubernetes release was built and tested with
		# (1.22.8 for v1.28.15, 1.26.10 for v1.37.2). The main module's go
		# line sets the runtime's GODEBUG defaults (timers, TLS, x509, HTTP
		# parsing changed between Go 1.22 and 1.26), so the wrapper asks for
		# that release's behaviour; each dependency keeps its own go line for
		# language semantics whatever the wrapper says.
		gover=$(cut -d. -f1,2 "$(echo "$info" | sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')/.go-version" 2>/dev/null || true)
		{
			echo "module autodeploy.local/testbin/kubernetes"
			echo
			echo "go 1.26"
			echo
			[ -n "$gover" ] && echo "godebug default=go$gover" && echo
			echo "require k8s.io/kubernetes $K8S_VERSION"
			echo
			# k8s.io/kubernetes points its staging modules at ./staging/src; the
			# same modules are published at the matching v0 version.
			sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#replace \1 => \1 '"$STAGING_VERSION"'#p' "$gomod"
		} >"$src/go.mod"
		cat >"$src/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
)
GO
		(cd "$src" && go mod tidy)
	fi
	local minor
	minor=$(echo "$K8S_VERSION" | cut -d. -f2)
	local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
	for c in "${missing[@]}"; do
		log "building $c"
		(cd "$src" && go build -trimpath -ldflags="$ldflags" -o "$bin/$c.tmp" "k8s.io/kubernetes/cmd/$c")
		mv "$bin/$c.tmp" "$bin/$c"
	done
}

case $DATASTORE in
etcd) build_etcd ;;
kine) build_kine ;;
esac
build_kwok
build_kube
echo "$bin"
