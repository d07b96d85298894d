package manifests

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

// leaseExample is the example config with lock.type lease, which the
// Deployment needs, written beside the test (the ConfigMap is its file).
func leaseExample(t *testing.T) *config.Config {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "config", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	leased := strings.Replace(string(raw), "\n  type: file\n", "\n  type: lease\n", 1)
	if leased == string(raw) {
		t.Fatal("the example config has no lock type to change: update leaseExample")
	}
	path := filepath.Join(t.TempDir(), "example.yaml")
	if err := os.WriteFile(path, []byte(leased), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// documents decodes every object of a manifests output, by kind.
func documents(t *testing.T, out string) map[string][]byte {
	t.Helper()
	docs := map[string][]byte{}
	for _, u := range kubetest.DecodeAll(t, out) {
		b, err := u.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := docs[u.GetKind()]; dup {
			t.Fatalf("two %ss in\n%s", u.GetKind(), out)
		}
		docs[u.GetKind()] = b
	}
	return docs
}

func decodeAs(t *testing.T, raw []byte, into any) {
	t.Helper()
	if err := utilyaml.Unmarshal(raw, into); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
}

// The watch's Deployment: two replicas of the image, running watch with
// its probes, in the pod the CronJob runs in (ServiceAccount, security
// contexts, config and secrets mounted the same way), next to the very
// Secret and ConfigMap the CronJob's output has (both may be applied).
func TestDeployment(t *testing.T) {
	cfg := leaseExample(t)
	o := CronJobOptions{Image: "registry.local/autodeploy:v1", Namespace: "ops", ServiceAccount: "deployer", Getenv: fakeEnv, ReadFile: fakeFile}
	var dep, cj bytes.Buffer
	if err := Deployment(&dep, cfg, o); err != nil {
		t.Fatal(err)
	}
	if err := CronJob(&cj, cfg, o); err != nil {
		t.Fatal(err)
	}
	docs, cjDocs := documents(t, dep.String()), documents(t, cj.String())
	for _, kind := range []string{"Secret", "ConfigMap"} {
		if docs[kind] == nil || string(docs[kind]) != string(cjDocs[kind]) {
			t.Errorf("the %s differs from the CronJob's:\n%s\n%s", kind, docs[kind], cjDocs[kind])
		}
	}
	if len(docs) != 3 {
		t.Errorf("%d objects, want a Secret, a ConfigMap and a Deployment:\n%s", len(docs), dep.String())
	}
	var d appsv1.Deployment
	var c batchv1.CronJob
	decodeAs(t, docs["Deployment"], &d)
	decodeAs(t, cjDocs["CronJob"], &c)
	if d.Namespace != "ops" || d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("namespace %q, replicas %v, want ops and 2", d.Namespace, d.Spec.Replicas)
	}
	pod, cjPod := d.Spec.Template.Spec, c.Spec.JobTemplate.Spec.Template.Spec
	if pod.ServiceAccountName != "deployer" || !reflect.DeepEqual(pod.SecurityContext, cjPod.SecurityContext) || !reflect.DeepEqual(pod.Volumes, cjPod.Volumes) {
		t.Errorf("pod: ServiceAccount %q, security context %+v, volumes %+v; want the CronJob's", pod.ServiceAccountName, pod.SecurityContext, pod.Volumes)
	}
	if pod.RestartPolicy != "" && pod.RestartPolicy != corev1.RestartPolicyAlways {
		t.Errorf("restartPolicy %q in a Deployment", pod.RestartPolicy)
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g > 10 {
		t.Errorf("terminationGracePeriodSeconds %v, want a few seconds (SIGTERM stops the watch within one)", g)
	}
	sel := d.Spec.Selector
	if sel == nil || len(sel.MatchLabels) == 0 {
		t.Fatalf("no selector")
	}
	for k, v := range sel.MatchLabels {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("the selector's %s=%s is not on the pods: %v", k, v, d.Spec.Template.Labels)
		}
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	ctr, cjCtr := pod.Containers[0], cjPod.Containers[0]
	if ctr.Image != o.Image || !reflect.DeepEqual(ctr.SecurityContext, cjCtr.SecurityContext) || !reflect.DeepEqual(ctr.VolumeMounts, cjCtr.VolumeMounts) {
		t.Errorf("container: image %q, security context %+v, mounts %+v; want the CronJob's", ctr.Image, ctr.SecurityContext, ctr.VolumeMounts)
	}
	if want := []string{"watch", "--config", "/etc/autodeploy/config.yaml", "--probe-address", ":8080"}; !reflect.DeepEqual(ctr.Args, want) {
		t.Errorf("args %q, want %q", ctr.Args, want)
	}
	if len(ctr.Ports) != 1 || ctr.Ports[0].Name != "probes" || ctr.Ports[0].ContainerPort != 8080 {
		t.Errorf("ports %+v, want 8080 named probes", ctr.Ports)
	}
	for name, tc := range map[string]struct {
		p    *corev1.Probe
		path string
	}{"liveness": {ctr.LivenessProbe, "/healthz"}, "readiness": {ctr.ReadinessProbe, "/readyz"}} {
		if tc.p == nil || tc.p.HTTPGet == nil || tc.p.HTTPGet.Path != tc.path || tc.p.HTTPGet.Port.String() != "probes" {
			t.Errorf("%s probe %+v, want GET %s on probes", name, tc.p, tc.path)
		}
	}
	res := ctr.Resources
	if res.Limits.Memory().String() != "64Mi" || res.Requests.Cpu().String() != "10m" || res.Requests.Memory().IsZero() {
		t.Errorf("resources %+v, want a 64Mi memory limit, 10m cpu and a memory request", res)
	}
	if !strings.Contains(dep.String(), "manifests rbac -n ops") {
		t.Errorf("the output does not say which RBAC to install:\n%s", dep.String())
	}
}

// The replicas elect a leader on a Lease, and the host's commands
// (rollback, hold, a cron run) must share the lock they act under: a
// config with the file lock is refused, saying why and what to change.
func TestDeploymentNeedsTheLease(t *testing.T) {
	cfg := example(t)
	if cfg.Lock.Type != config.LockFile {
		t.Fatalf("the example's lock is %q: the test needs the file lock", cfg.Lock.Type)
	}
	var b bytes.Buffer
	err := Deployment(&b, cfg, CronJobOptions{Image: "r/a:v1", Namespace: "ops", ServiceAccount: "autodeploy", Getenv: fakeEnv, ReadFile: fakeFile})
	if err == nil {
		t.Fatalf("a file lock accepted:\n%s", b.String())
	}
	for _, want := range []string{"lock.type", "lease", cfg.Path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v: does not say %q", err, want)
		}
	}
	if b.Len() > 0 {
		t.Errorf("printed before refusing:\n%s", b.String())
	}
	// The Lease the replicas elect on is <leaseName>-watch: a lease name
	// that leaves no room for the suffix is refused too.
	long := leaseExample(t)
	long.Lock.LeaseName = strings.Repeat("a", 250)
	if err := Deployment(&bytes.Buffer{}, long, CronJobOptions{Image: "r/a:v1", Namespace: "ops", ServiceAccount: "autodeploy", Getenv: fakeEnv, ReadFile: fakeFile}); err == nil || !strings.Contains(err.Error(), "-watch") {
		t.Errorf("lease name of 250 characters: %v, want a refusal naming the watch's Lease", err)
	}
	// What the CronJob refuses, the Deployment refuses.
	for _, o := range []CronJobOptions{{Image: "", Namespace: "ops", ServiceAccount: "a"}, {Image: "r/a:v1", Namespace: "Bad_NS", ServiceAccount: "a"}, {Image: "r/a:v1", Namespace: "ops", ServiceAccount: "Bad_SA"}} {
		o.Getenv, o.ReadFile = fakeEnv, fakeFile
		if err := Deployment(&bytes.Buffer{}, leaseExample(t), o); err == nil {
			t.Errorf("Deployment(%+v) accepted", o)
		}
	}
}
