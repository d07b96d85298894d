package manifests

import (
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// watchLabels select the watch's pods.
const watchLabels = "{app.kubernetes.io/name: autodeploy, app.kubernetes.io/component: watch}"

// Deployment writes the CronJob's Secret and ConfigMap and a Deployment
// running `autodeploy watch` in the CronJob's pod: two replicas that elect
// a leader on the Lease <lock.leaseName>-watch, so that a second one takes
// over within lock.leaseDuration when the node of the first dies, probed
// on /healthz and /readyz. The config must use the Lease lock: the pods
// act under it, and so must every command run from a host.
func Deployment(w io.Writer, cfg *config.Config, o CronJobOptions) error {
	if cfg.Lock.Type != config.LockLease {
		// The ConfigMap would say lease whatever the file says (as the
		// CronJob's does), but a host running this config (cron, rollback,
		// hold) would lock a file the pods never see, and act beside them.
		return fmt.Errorf("%s has lock.type %q: the watch's replicas elect a leader on a Lease, and the commands run on a host must take the same lock as the pods; set lock.type: lease (with lock.leaseNamespace and lock.leaseName) in the config, and on every host that runs it", cfg.Path, cfg.Lock.Type)
	}
	lease := cfg.Lock.LeaseName + "-watch"
	if err := validName("the watch's Lease (lock.leaseName + \"-watch\")", lease, validation.IsDNS1123Subdomain); err != nil {
		return fmt.Errorf("%w: shorten lock.leaseName in %s", err, cfg.Path)
	}
	b, secrets, err := inClusterHead(cfg, o, "deployment")
	if err != nil {
		return err
	}
	fmt.Fprintf(b, `---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: autodeploy-watch
  namespace: %[1]s
  labels: %[2]s
spec:
  # One replica acts: the leader on the Lease %[3]s/%[4]s.
  # The other stands by (ready) and takes over within lock.leaseDuration
  # (%[5]s) when the leader's pod or node dies.
  replicas: 2
  selector:
    matchLabels: %[2]s
  template:
    metadata:
      labels: %[2]s
    spec:
`, o.Namespace, watchLabels, cfg.Lock.LeaseNamespace, lease, cfg.Lock.LeaseDuration)
	b.WriteString(indent(podSpec{
		o:       o,
		secrets: secrets,
		// SIGTERM stops the watch within a second, a rollout it started left
		// marked for the next pass: the default 30 s would only delay the
		// other replica's take-over. The replicas go to two nodes where
		// there are two, or the standby dies with the leader.
		podFields: `terminationGracePeriodSeconds: 5
topologySpreadConstraints:
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector: {matchLabels: ` + watchLabels + `}
`,
		// No -v, which the CronJob's run has for its summary: the log
		// (log.file "-" in the ConfigMap) is already the pod's output.
		args: `["watch", "--config", "/etc/autodeploy/config.yaml", "--probe-address", ":8080"]`,
		// /healthz answers while the watch's loop runs; /readyz once its
		// watches are synced, or while it stands by as a non-leader, so a
		// standby is ready and a rolling update of this Deployment goes on.
		container: `ports:
- {name: probes, containerPort: 8080}
livenessProbe:
  httpGet: {path: /healthz, port: probes}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: probes}
  periodSeconds: 5
`,
		// Idle, a watch of 50 services stays under 30 MB (issue 20's
		// budget); 64Mi stops a leak before it starves the node.
		resources: "requests: {cpu: 10m, memory: 32Mi}\nlimits: {memory: 64Mi}\n",
	}.String(), 6))
	_, err = io.WriteString(w, b.String())
	return err
}
