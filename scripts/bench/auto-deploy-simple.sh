#!/usr/bin/env bash
# The baseline: the seed's auto-deploy-simple.sh algorithm (see
# ../shared/seed, section 3), written as well as bash allows, for the
# side-by-side benchmark of scripts/bench. Not part of autodeploy.
#
#   1. force a Flux sync (flux reconcile, or what it does: annotate each
#      ImageRepository and wait for status.lastHandledReconcileAt)
#   2. per service: current image (kubectl), latest image from the
#      ImagePolicy (kubectl), compare full references, kubectl set image,
#      kubectl rollout status --timeout, a final check
#   3. a summary
#
# Usage: auto-deploy-simple.sh SERVICE...
# Env: NAMESPACE (apps), FLUX_NAMESPACE (flux-system), ROLLOUT_TIMEOUT (300s),
#      RECONCILE_TIMEOUT (60s), LOG (auto-deploy.log), NO_RECONCILE (unset)
set -uo pipefail

NAMESPACE=${NAMESPACE:-apps}
FLUX_NAMESPACE=${FLUX_NAMESPACE:-flux-system}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-300s}
RECONCILE_TIMEOUT=${RECONCILE_TIMEOUT:-60s}
LOG=${LOG:-auto-deploy.log}

log() { printf '%s %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*" >>"$LOG"; }

start=$(date +%s)
deployed=0 failed=0 unchanged=0

# 1. Force a Flux sync.
if [ -z "${NO_RECONCILE:-}" ]; then
	if command -v flux >/dev/null 2>&1; then
		for svc in "$@"; do
			flux reconcile image repository "$svc" -n "$FLUX_NAMESPACE" >/dev/null 2>&1 || log "WARN flux reconcile $svc failed"
		done
	else
		token=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
		for svc in "$@"; do
			kubectl annotate --overwrite -n "$FLUX_NAMESPACE" imagerepository "$svc" \
				"reconcile.fluxcd.io/requestedAt=$token" >/dev/null || log "WARN annotate $svc failed"
		done
		for svc in "$@"; do
			kubectl wait -n "$FLUX_NAMESPACE" imagerepository "$svc" --timeout="$RECONCILE_TIMEOUT" \
				--for=jsonpath='{.status.lastHandledReconcileAt}'="$token" >/dev/null 2>&1 ||
				log "WARN $svc: no answer to the reconcile request"
		done
	fi
fi

# 2. Each service.
for svc in "$@"; do
	current=$(kubectl get deployment "$svc" -n "$NAMESPACE" -o jsonpath='{.spec.template.spec.containers[0].image}' 2>/dev/null)
	latest=$(kubectl get imagepolicy "$svc" -n "$FLUX_NAMESPACE" -o jsonpath='{.status.latestRef.name}:{.status.latestRef.tag}' 2>/dev/null)
	if [ "$latest" = ":" ] || [ -z "$latest" ]; then
		latest=$(kubectl get imagepolicy "$svc" -n "$FLUX_NAMESPACE" -o jsonpath='{.status.latestImage}' 2>/dev/null)
	fi
	if [ -z "$current" ] || [ -z "$latest" ]; then
		log "ERROR $svc: deployment or image policy not found"
		failed=$((failed + 1))
		continue
	fi
	# The full reference, never the bare tag (the seed's ImagePullBackOff).
	if [ "$current" = "$latest" ]; then
		unchanged=$((unchanged + 1))
		continue
	fi
	log "INFO $svc: $current -> $latest"
	if ! kubectl set image "deployment/$svc" "$svc=$latest" -n "$NAMESPACE" >/dev/null; then
		log "ERROR $svc: set image failed"
		failed=$((failed + 1))
		continue
	fi
	if kubectl rollout status "deployment/$svc" -n "$NAMESPACE" --timeout="$ROLLOUT_TIMEOUT" >/dev/null 2>&1; then
		available=$(kubectl get deployment "$svc" -n "$NAMESPACE" -o jsonpath='{.status.availableReplicas}')
		log "INFO $svc: deployed, $available available"
		deployed=$((deployed + 1))
	else
		log "ERROR $svc: rollout did not finish within $ROLLOUT_TIMEOUT"
		failed=$((failed + 1))
	fi
done

# 3. Summary.
log "SUMMARY deployed=$deployed unchanged=$unchanged failed=$failed duration=$(($(date +%s) - start))s"
[ "$failed" -eq 0 ]
