#!/usr/bin/env bash
# Generates the Flux CustomResourceDefinitions used by the integration tests
# into testdata/crds/flux-<generation>/, from Flux's published Go `api`
# modules with controller-gen. The Go module proxy serves the api modules but
# not the controller modules (whose zips would carry the CRD YAML), so the
# CRDs are rebuilt from the kubebuilder markers in the api types.
#
# Each api module version is loaded in a throw-away module of its own, so its
# schema is built against exactly the dependency versions (fluxcd/pkg/apis/meta,
# k8s.io/apimachinery) that the released module requires, never against a
# version another api module pulled in.
#
# controller-gen is installed once into
#   ${AUTODEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autodeploy}/tools/controller-gen/<version>/
#
# Usage: scripts/gen-crds.sh      # rewrites the *.yaml in testdata/crds/flux-*/
# Nothing in the repository's go.mod/go.sum is touched.
set -euo pipefail

CONTROLLER_GEN_VERSION=${CONTROLLER_GEN_VERSION:-v0.21.0}

IMAGE_API=github.com/fluxcd/image-reflector-controller/api
SOURCE_API=github.com/fluxcd/source-controller/api
KUSTOMIZE_API=github.com/fluxcd/kustomize-controller/api
AUTOMATION_API=github.com/fluxcd/image-automation-controller/api
NOTIFICATION_API=github.com/fluxcd/notification-controller/api

# Flux generation -> image-reflector-controller api version.
declare -A IMAGE_VERSIONS=(
	[flux-2.6]=v0.35.2
	[flux-2.7]=v1.0.4
	[flux-2.9]=v1.2.5
)
# Flux generation -> image-automation-controller api version: the release
# each Flux version ships (2.6: v0.41.x, 2.7: v1.0.4, the controller issue 12
# observed). The proxy's version list omits v1.0.4, but it serves the module
# at that exact version; 2.9 takes v1.2.5, which requires source-controller/api
# v1.9 like the image-reflector-controller/api v1.2.5 beside it.
declare -A AUTOMATION_VERSIONS=(
	[flux-2.6]=v0.41.2
	[flux-2.7]=v1.0.4
	[flux-2.9]=v1.2.5
)
# Flux generation -> notification-controller api version (Receiver, Alert,
# Provider): the minor line each Flux version ships (2.6: v1.6, 2.7: v1.7,
# 2.9: v1.9). v1.10 needs a newer Go than 1.26; the proxy's version list
# omits v1.7.x, but it serves v1.7.5 at that exact version.
declare -A NOTIFICATION_VERSIONS=(
	[flux-2.6]=v1.6.0
	[flux-2.7]=v1.7.5
	[flux-2.9]=v1.9.4
)
# source-controller and kustomize-controller api versions, the same in every
# generation's directory.
SOURCE_VERSION=${SOURCE_VERSION:-v1.9.5}
KUSTOMIZE_VERSION=${KUSTOMIZE_VERSION:-v1.9.5}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out_root="$repo/testdata/crds"
cache=${AUTODEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autodeploy}
tools="$cache/tools/controller-gen/$CONTROLLER_GEN_VERSION"
controller_gen="$tools/controller-gen"

log() { echo "gen-crds: $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/autodeploy-gen-crds.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Keep the work modules independent of any go.work the caller has.
export GOWORK=off

install_controller_gen() {
	[ -x "$controller_gen" ] && return
	log "installing controller-gen $CONTROLLER_GEN_VERSION into $tools"
	mkdir -p "$tools"
	GOBIN="$tools" go install -trimpath \
		"sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION"
}

# gen MODULE VERSION OUTDIR: writes the CRDs of every api package of
# MODULE@VERSION into OUTDIR.
gen() {
	local module=$1 version=$2 out=$3
	local name=${module//\//_}@$version
	local src="$work/$name"
	log "generating $module@$version"
	mkdir -p "$src" "$out"
	cat >"$src/go.mod" <<MOD
module autodeploy.local/gen-crds

go 1.26
MOD
	# The pattern form records go.sum entries for every package of the api
	# module and their imports, so controller-gen can load them.
	if ! (cd "$src" && go get "$module/...@$version") >"$src/go-get.log" 2>&1; then
		cat "$src/go-get.log" >&2
		return 1
	fi
	# -mod=mod lets the loader fill in any go.sum line go get did not write.
	(cd "$src" && GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod" \
		"$controller_gen" crd paths="$module/..." output:crd:dir="$out")
}

install_controller_gen

# source and kustomize are the same everywhere: generate once, then copy.
common="$work/common"
gen "$SOURCE_API" "$SOURCE_VERSION" "$common"
gen "$KUSTOMIZE_API" "$KUSTOMIZE_VERSION" "$common"

# Everything is generated under $work first, so a failed run leaves the
# checked-in files as they were.
for gen_dir in $(printf '%s\n' "${!IMAGE_VERSIONS[@]}" | sort); do
	gen "$IMAGE_API" "${IMAGE_VERSIONS[$gen_dir]}" "$work/out/$gen_dir"
	gen "$AUTOMATION_API" "${AUTOMATION_VERSIONS[$gen_dir]}" "$work/out/$gen_dir"
	gen "$NOTIFICATION_API" "${NOTIFICATION_VERSIONS[$gen_dir]}" "$work/out/$gen_dir"
	cp "$common"/*.yaml "$work/out/$gen_dir"/
done
for gen_dir in $(printf '%s\n' "${!IMAGE_VERSIONS[@]}" | sort); do
	out="$out_root/$gen_dir"
	mkdir -p "$out"
	rm -f "$out"/*.yaml
	cp "$work/out/$gen_dir"/*.yaml "$out"/
	log "$gen_dir: $(cd "$out" && ls *.yaml | tr '\n' ' ')"
done
