#!/usr/bin/env bash
# The baseline of `autodeploy status`: the seed's check-status.sh as it is
# described (deployments overview, pods, Flux's latest detections, recent
# log activity, next run), with kubectl get calls.
# Usage: check-status.sh   Env: NAMESPACE, FLUX_NAMESPACE, LOG
set -uo pipefail
NAMESPACE=${NAMESPACE:-apps}
FLUX_NAMESPACE=${FLUX_NAMESPACE:-flux-system}
LOG=${LOG:-auto-deploy.log}
echo "== Deployments"
kubectl get deployments -n "$NAMESPACE" -o wide
echo "== Pods"
kubectl get pods -n "$NAMESPACE" -o wide
echo "== Flux image policies"
kubectl get imagepolicies -n "$FLUX_NAMESPACE" -o custom-columns='NAME:.metadata.name,LATEST:.status.latestRef.tag,READY:.status.conditions[?(@.type=="Ready")].status'
echo "== Image repositories"
kubectl get imagerepositories -n "$FLUX_NAMESPACE" -o custom-columns='NAME:.metadata.name,LAST SCAN:.status.lastScanResult.scanTime,TAGS:.status.lastScanResult.tagCount'
echo "== Recent activity"
tail -n 10 "$LOG" 2>/dev/null || echo "(no log)"
echo "== Next run"
echo "every 2 minutes: $(date -d "@$(( ( $(date +%s) / 120 + 1 ) * 120 ))" '+%H:%M:%S')"
