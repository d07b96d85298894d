#!/usr/bin/env bash
# Builds the control-plane binaries the test cluster runs (kube-apiserver,
# kube-controller-manager, kube-scheduler, etcd, kwok) from Go modules into a
# cache directory keyed by version, outside the repository. Only what is
# missing is built; a lock keeps two builds from running at once (a cold
# build takes ~14 minutes on 2 cores and several GB of build cache).
#
# Usage: scripts/testbin/build.sh            # prints the bin directory
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
STAGING_VERSION=${STAGING_VERSION:-v0.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}

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
		local gomod
		gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
		{
			echo "module autodeploy.local/testbin/kubernetes"
			echo
			echo "go 1.26"
			echo
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

build_etcd
build_kwok
build_kube
echo "$bin"
