package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fatih/color"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
)

var update = flag.Bool("update", false, "rewrite golden files")

var now = time.Date(2026, 11, 25, 10, 30, 0, 0, time.UTC)

const reg = "ghcr.io/team-mercurious/"

func at(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }

type fixture struct {
	objs Objects
}

func newFixture() *fixture {
	return &fixture{objs: Objects{
		FluxAPI:     "v1",
		Deployments: map[string]*appsv1.Deployment{}, ReplicaSets: map[string][]appsv1.ReplicaSet{}, Pods: map[string][]corev1.Pod{},
		Policies: map[string]*unstructured.Unstructured{}, Repositories: map[string]*unstructured.Unstructured{},
	}}
}

// deployment adds a Deployment at image with revisions (oldest first) and
// its pods, in status st.
func (f *fixture) deployment(name string, replicas int32, images []string, st appsv1.DeploymentStatus, ann map[string]string, pods ...corev1.Pod) {
	uid := types.UID("uid-" + name)
	cur := images[len(images)-1]
	if ann == nil {
		ann = map[string]string{}
	}
	ann["deployment.kubernetes.io/revision"] = itoa(len(images))
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", UID: uid, Generation: 2, Annotations: ann},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: cur}}}}},
		Status: st,
	}
	d.Status.ObservedGeneration = 2
	f.objs.Deployments["apps/"+name] = d
	for i, img := range images {
		rs := appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
			Name: name + "-h" + itoa(i+1), UID: types.UID(name + "-h" + itoa(i+1)), Namespace: "apps", CreationTimestamp: at(time.Duration(len(images)-i) * time.Hour),
			Annotations:     map[string]string{"deployment.kubernetes.io/revision": itoa(i + 1), "kubernetes.io/change-cause": "autodeploy: -> " + img},
			OwnerReferences: []metav1.OwnerReference{{UID: uid, Controller: ptr(true)}},
			Labels:          map[string]string{"app": name, "pod-template-hash": "h" + itoa(i+1)},
		}}
		rs.Spec.Template = *d.Spec.Template.DeepCopy()
		rs.Spec.Template.Labels = map[string]string{"app": name, "pod-template-hash": "h" + itoa(i+1)}
		rs.Spec.Template.Spec.Containers[0].Image = img
		f.objs.ReplicaSets["apps"] = append(f.objs.ReplicaSets["apps"], rs)
	}
	f.objs.Pods["apps"] = append(f.objs.Pods["apps"], pods...)
}

func (f *fixture) policy(name, latest string) {
	i := strings.LastIndex(latest, ":")
	f.objs.Policies["flux-system/"+name] = &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": name, "namespace": "flux-system"},
		"spec":     map[string]any{"imageRepositoryRef": map[string]any{"name": name}},
		"status": map[string]any{
			"latestRef":  map[string]any{"name": latest[:i], "tag": latest[i+1:]},
			"conditions": []any{map[string]any{"type": "Ready", "status": "True", "message": "resolved"}},
		},
	}}
	f.objs.Repositories["flux-system/"+name] = &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": name, "namespace": "flux-system"},
		"status": map[string]any{
			"lastScanResult": map[string]any{"scanTime": now.Add(-40 * time.Second).Format(time.RFC3339), "tagCount": int64(12)},
			"conditions":     []any{map[string]any{"type": "Ready", "status": "True", "message": "successful scan"}},
		},
	}}
}

// kpod is a pod of ReplicaSet <deployment>-<hash>, named after it.
func kpod(name, hash, status string, ready bool, restarts int32, age time.Duration) corev1.Pod {
	rs := name[:strings.LastIndex(name, "-")]
	cs := corev1.ContainerStatus{Name: "c", Ready: ready, RestartCount: restarts}
	phase := corev1.PodRunning
	if status != "Running" {
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: status}
		if status == "ImagePullBackOff" {
			phase = corev1.PodPending
		}
	}
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", CreationTimestamp: at(age), Labels: map[string]string{"pod-template-hash": hash},
			OwnerReferences: []metav1.OwnerReference{{UID: types.UID(rs), Name: rs, Kind: "ReplicaSet", Controller: ptr(true)}}},
		Spec:   corev1.PodSpec{NodeName: "kwok-node-0", Containers: []corev1.Container{{Name: "c"}}},
		Status: corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{cs}},
	}
}

func complete(n int32) appsv1.DeploymentStatus {
	return appsv1.DeploymentStatus{Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: "True", Reason: "NewReplicaSetAvailable", LastUpdateTime: at(3 * time.Minute)}}}
}

// scenario: one service of each kind the issue names.
func scenario(t *testing.T) (*config.Config, Objects) {
	t.Helper()
	cfg, err := config.Parse([]byte(`lockFile: /run/lock/autodeploy.lock
defaults: {namespace: apps}
services:
  - name: gateway
  - name: enrichment
  - name: generation
  - name: search
  - name: billing
  - name: mailer
`), "status.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture()
	// healthy and up to date
	f.deployment("gateway", 2, []string{reg + "gateway:sha-1a2b3c4", reg + "gateway:sha-5d6e7f8"}, complete(2), nil,
		kpod("gateway-h2-aaaaa", "h2", "Running", true, 0, 3*time.Minute), kpod("gateway-h2-bbbbb", "h2", "Running", true, 0, 3*time.Minute))
	f.policy("gateway", reg+"gateway:sha-5d6e7f8")
	// mid-rollout, the new pod cannot pull its image
	f.deployment("enrichment", 2, []string{reg + "enrichment:sha-1111111", reg + "enrichment:fail-2222222"},
		appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 1, ReadyReplicas: 2, AvailableReplicas: 2},
		map[string]string{"autodeploy.dev/verified": "false", "autodeploy.dev/deployed-image": reg + "enrichment:fail-2222222", "autodeploy.dev/previous-revision": "1"},
		kpod("enrichment-h2-ccccc", "h2", "ImagePullBackOff", false, 0, 20*time.Second),
		kpod("enrichment-h1-ddddd", "h1", "Running", true, 0, 2*time.Hour), kpod("enrichment-h1-eeeee", "h1", "Running", true, 0, 2*time.Hour))
	f.policy("enrichment", reg+"enrichment:fail-2222222")
	// held after a rollback; the policy still points at the image rolled back from
	f.deployment("generation", 1, []string{reg + "generation:sha-3333333"}, complete(1),
		map[string]string{
			"autodeploy.dev/hold":         `{"by":"alice@ops-1","reason":"500s on /search","at":"2026-11-25T10:12:00Z","from":"` + reg + `generation:sha-4444444"}`,
			"autodeploy.dev/failed-image": `{"image":"` + reg + `generation:sha-4444444","reason":"rolled back by alice@ops-1: 500s on /search","at":"2026-11-25T10:12:00Z"}`,
		},
		kpod("generation-h1-fffff", "h1", "Running", true, 0, time.Hour))
	f.policy("generation", reg+"generation:sha-4444444")
	// ... applied from git by Flux: the rollback kept Flux off it and
	// excluded the tag, and an automation writes the policy's tag to git
	f.objs.Deployments["apps/generation"].Labels = map[string]string{"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}
	f.objs.Deployments["apps/generation"].Annotations["kustomize.toolkit.fluxcd.io/reconcile"] = "disabled"
	f.objs.Deployments["apps/generation"].Annotations["autodeploy.dev/reconcile-disabled"] = `{"by":"alice@ops-1","reason":"500s on /search","at":"2026-11-25T10:12:00Z","kustomization":"flux-system/apps"}`
	f.objs.Repositories["flux-system/generation"].Object["spec"] = map[string]any{"exclusionList": []any{`^.*\.sig$`, "^sha-4444444$"}}
	f.objs.Repositories["flux-system/generation"].SetAnnotations(map[string]string{"autodeploy.dev/exclusions": `[{"pattern":"^sha-4444444$","tag":"sha-4444444","service":"generation","reason":"rolled back by alice@ops-1: 500s on /search","at":"2026-11-25T10:12:00Z"}]`})
	f.objs.Kustomizations = map[string]*unstructured.Unstructured{"flux-system/apps": {Object: map[string]any{
		"metadata": map[string]any{"name": "apps", "namespace": "flux-system"},
		"spec":     map[string]any{"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
		"status": map[string]any{"lastAppliedRevision": "main@sha1:9f8e7d6c5b4a39281706f5e4d3c2b1a098765432",
			"conditions": []any{map[string]any{"type": "Ready", "status": "True", "message": "Applied revision: main@sha1:9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"}}},
	}}}
	f.objs.Automations = map[string][]unstructured.Unstructured{"flux-system": {{Object: map[string]any{
		"metadata": map[string]any{"name": "flux-system", "namespace": "flux-system"},
		"spec":     map[string]any{"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
		"status": map[string]any{"lastPushCommit": "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567", "lastPushTime": "2026-11-25T10:12:03Z",
			"conditions": []any{map[string]any{"type": "Ready", "status": "True", "message": "repository up-to-date"}}},
	}}}}
	// behind its policy
	f.deployment("search", 1, []string{reg + "search:sha-5555555"}, complete(1), nil, kpod("search-h1-ggggg", "h1", "Running", true, 0, time.Hour))
	f.policy("search", reg+"search:sha-6666666")
	// no ImagePolicy
	f.deployment("billing", 1, []string{reg + "billing:v1.2.0"}, complete(1), nil, kpod("billing-h1-hhhhh", "h1", "Running", true, 0, 26*time.Hour))
	// no Deployment
	f.policy("mailer", reg+"mailer:sha-7777777")
	return cfg, f.objs
}

func local() Local {
	fin := now.Add(-90 * time.Second).Add(2800 * time.Millisecond)
	return Local{
		LastRun: &runlog.Run{ID: "20261125T102830-ab12", Started: now.Add(-90 * time.Second), Finished: &fin, Duration: 2800 * time.Millisecond,
			Result: "failed", Outcomes: map[string]string{"gateway": "up-to-date", "enrichment": "rolled-back", "generation": "skipped"}, Errors: 1},
		Holder: &lock.Holder{Pid: 4242, Since: now.Add(-5 * time.Second), Command: "autodeploy run 20261125T102955-cd34"},
	}
}

func TestWriteTextGolden(t *testing.T) {
	cfg, objs := scenario(t)
	r := Build(cfg, cfg.Services, objs, local(), now)
	for _, tc := range []struct {
		name    string
		noColor bool
		opts    TextOptions
	}{
		{"status.golden", true, TextOptions{}},
		{"status-color.golden", false, TextOptions{}},
		{"status-details-wide.golden", true, TextOptions{Details: true, Wide: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			saved := color.NoColor
			color.NoColor = tc.noColor
			defer func() { color.NoColor = saved }()
			var buf bytes.Buffer
			if err := WriteText(&buf, r, tc.opts); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, buf.Bytes())
			if tc.noColor {
				for i, l := range strings.Split(buf.String(), "\n") {
					if tc.opts == (TextOptions{}) && len([]rune(l)) > 80 {
						t.Errorf("line %d is %d columns, more than an 80-column SSH window:\n%s", i+1, len([]rune(l)), l)
					}
				}
			}
		})
	}
}

func TestBuildStates(t *testing.T) {
	cfg, objs := scenario(t)
	r := Build(cfg, cfg.Services, objs, local(), now)
	want := map[string][2]string{
		"gateway":    {StateHealthy, SyncUpToDate},
		"enrichment": {StateFailed, SyncUpToDate},
		"generation": {StateHealthy, SyncBehind},
		"search":     {StateHealthy, SyncBehind},
		"billing":    {StateHealthy, SyncUnknown},
		"mailer":     {StateMissing, SyncUnknown},
	}
	for _, s := range r.Services {
		if got := [2]string{s.State, s.Sync}; got != want[s.Name] {
			t.Errorf("%s: state/sync = %v, want %v", s.Name, got, want[s.Name])
		}
		if s.OK() != (s.Name == "gateway") {
			t.Errorf("%s: OK = %v", s.Name, s.OK())
		}
	}
	if r.Healthy {
		t.Error("report healthy with failing services")
	}
	healthyOnly := Build(cfg, cfg.Services[:1], objs, Local{}, now)
	if !healthyOnly.Healthy {
		t.Errorf("gateway alone is not healthy: %+v", healthyOnly.Services[0])
	}
}

// The JSON is a documented interface: its golden file is its schema, and
// every documented key is present.
func TestJSONSchema(t *testing.T) {
	cfg, objs := scenario(t)
	r := Build(cfg, cfg.Services, objs, local(), now)
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "status.json", append(b, '\n'))
	var generic map[string]any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schemaVersion", "generatedAt", "healthy", "fluxImageAPI", "services", "lastRun", "runInProgress", "schedule"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("missing top-level key %q", k)
		}
	}
	svc := generic["services"].([]any)[1].(map[string]any)
	for _, k := range []string{"name", "namespace", "deployment", "state", "sync", "rollout", "imagePolicy", "imageRepository", "nextRun", "unverified", "pods"} {
		if _, ok := svc[k]; !ok {
			t.Errorf("missing service key %q in %v", k, svc)
		}
	}
}

func TestOverdue(t *testing.T) {
	cfg, objs := scenario(t)
	l := local()
	l.Holder = nil
	l.LastRun.Started = now.Add(-5 * time.Minute) // two */2 slots have passed
	if r := Build(cfg, cfg.Services, objs, l, now); !r.Schedule.Overdue {
		t.Error("a run 5 minutes ago on */2 is not overdue")
	}
	l.LastRun.Started = now.Add(-90 * time.Second)
	if r := Build(cfg, cfg.Services, objs, l, now); r.Schedule.Overdue {
		t.Error("a run 90 s ago on */2 is overdue")
	}
	if r := Build(cfg, cfg.Services, objs, l, now); !r.Schedule.NextRun.Equal(time.Date(2026, 11, 25, 10, 32, 0, 0, time.UTC)) {
		t.Errorf("next run = %s", r.Schedule.NextRun)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("..", "..", "testdata", "golden", "status", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test ./internal/status -update to accept):\n%s", path, got)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func ptr[T any](v T) *T { return &v }

// Marks a run leaves for a person: a failed image still running because its
// rollback could not be applied is a problem (exit 8) naming the fix; a
// pending retry is shown with its time and how to clear it.
func TestBuildMarks(t *testing.T) {
	cfg, err := config.Parse([]byte("defaults: {namespace: apps}\nservices:\n  - name: stuck\n  - name: retrying\n"), "marks.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture()
	f.deployment("stuck", 1, []string{reg + "stuck:sha-1111111", reg + "stuck:sha-2222222"}, complete(1),
		map[string]string{"autodeploy.dev/failed-image": `{"image":"` + reg + `stuck:sha-2222222","reason":"health check: status 503","at":"2026-11-25T10:20:00Z","rollbackError":"unable to find the specified revision 1"}`},
		kpod("stuck-h2-aaaaa", "h2", "Running", true, 0, time.Minute))
	f.policy("stuck", reg+"stuck:sha-2222222")
	f.deployment("retrying", 1, []string{reg + "retrying:sha-1111111"}, complete(1),
		map[string]string{"autodeploy.dev/retry": `{"image":"` + reg + `retrying:sha-2222222","cause":"registry","reason":"503","attempts":2,"after":"2026-11-25T10:34:00Z"}`},
		kpod("retrying-h1-bbbbb", "h1", "Running", true, 0, time.Minute))
	f.policy("retrying", reg+"retrying:sha-2222222")
	// A cluster fault: status gives the cluster's own words in full.
	f.deployment("quota", 1, []string{reg + "quota:sha-1111111"}, complete(1),
		map[string]string{"autodeploy.dev/retry": `{"image":"` + reg + `quota:sha-2222222","cause":"cluster","reason":"rollout did not finish within 5m0s; last status: ...","evidence":"pods \"quota-6d-x\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=3, limited: pods=3","attempts":1,"after":"2026-11-25T10:34:00Z"}`},
		kpod("quota-h1-ccccc", "h1", "Running", true, 0, time.Minute))
	f.policy("quota", reg+"quota:sha-2222222")
	cfg.Services = append(cfg.Services, cfg.Services[1])
	cfg.Services[2].Name, cfg.Services[2].Deployment, cfg.Services[2].PolicyName = "quota", "quota", "quota"
	r := Build(cfg, cfg.Services, f.objs, Local{}, now)
	stuck, retrying := r.Services[0], r.Services[1]
	if stuck.OK() || len(stuck.Problems) != 1 || !strings.Contains(stuck.Problems[0], "the rollback could not be applied: unable to find the specified revision 1") ||
		!strings.Contains(stuck.Problems[0], "autodeploy rollback stuck --to-revision N") {
		t.Errorf("stuck: OK %v, problems %q", stuck.OK(), stuck.Problems)
	}
	if retrying.Retry == nil || retrying.Retry.Attempts != 2 || retrying.NextRun == nil || !strings.Contains(retrying.NextRun.Reason, "trying again after 2026-11-25 10:34:00") {
		t.Errorf("retrying: retry %+v, next run %+v", retrying.Retry, retrying.NextRun)
	}
	var b bytes.Buffer
	if err := WriteText(&b, r, TextOptions{Details: true}); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(b.String()), " ") // rows wrap at 80 columns
	for _, part := range []string{"could not be applied: unable to find the specified revision 1", "failed because of the registry (attempt 2); tried again after 10:34:00 UTC", "resume --forget-failed",
		"failed because of the cluster (attempt 1)", `why pods "quota-6d-x" is forbidden: exceeded quota: q, requested: pods=1, used: pods=3, limited: pods=3`} {
		if !strings.Contains(text, part) {
			t.Errorf("text lacks %q:\n%s", part, b.String())
		}
	}
}

// A scan that fails keeps new images away while everything else looks
// healthy: status says so (exit 8), with the controller's message, and the
// last run's warnings are in the text.
func TestFluxTruth(t *testing.T) {
	cfg, err := config.Parse([]byte("defaults: {namespace: apps}\nservices:\n  - name: api\n"), "flux.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture()
	f.deployment("api", 1, []string{reg + "api:sha-1111111"}, complete(1), nil, kpod("api-h1-aaaaa", "h1", "Running", true, 0, time.Minute))
	f.policy("api", reg+"api:sha-1111111")
	repo := f.objs.Repositories["flux-system/api"]
	repo.Object["status"].(map[string]any)["conditions"] = []any{map[string]any{"type": "Ready", "status": "False",
		"message": "scan failed: Get \"https://ghcr.io/v2/\": dial tcp: connection refused"}}
	l := Local{LastRun: &runlog.Run{ID: "r1", Started: now.Add(-time.Minute), Result: "ok", Outcomes: map[string]string{"api": "up-to-date"}, Warnings: 1,
		WarningMessages: []string{"reconcile kind=ImageRepository object=flux-system/api problem=not Ready after rescan: scan failed"}}}
	r := Build(cfg, cfg.Services, f.objs, l, now)
	s := r.Services[0]
	if s.OK() || r.Healthy || len(s.Problems) != 1 || !strings.Contains(s.Problems[0], "ImageRepository flux-system/api is not Ready: scan failed") {
		t.Fatalf("OK %v, healthy %v, problems %q", s.OK(), r.Healthy, s.Problems)
	}
	var b bytes.Buffer
	if err := WriteText(&b, r, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if text := strings.Join(strings.Fields(b.String()), " "); !strings.Contains(text, "warning reconcile kind=ImageRepository object=flux-system/api") {
		t.Errorf("text lacks the run's warning:\n%s", b.String())
	}
}

// Who else writes a service: the owner of the image field, and the Flux
// Kustomization that applies the Deployment.
func TestWriters(t *testing.T) {
	cfg, err := config.Parse([]byte("defaults: {namespace: apps}\nservices:\n  - name: api\n"), "w.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture()
	f.deployment("api", 1, []string{reg + "api:sha-1111111"}, complete(1), nil, kpod("api-h1-aaaaa", "h1", "Running", true, 0, time.Minute))
	f.policy("api", reg+"api:sha-1111111")
	d := f.objs.Deployments["apps/api"]
	d.Labels = map[string]string{"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}
	d.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kustomize-controller", Operation: metav1.ManagedFieldsOperationApply,
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"api\"}":{"f:image":{}}}}}}}`)}}}
	r := Build(cfg, cfg.Services, f.objs, Local{}, now)
	ro := r.Services[0].Rollout
	if ro.ImageSetBy != "kustomize-controller" || ro.Kustomization != "flux-system/apps" {
		t.Fatalf("rollout = %+v", ro)
	}
	var b bytes.Buffer
	if err := WriteText(&b, r, TextOptions{Details: true}); err != nil {
		t.Fatal(err)
	}
	if text := strings.Join(strings.Fields(b.String()), " "); !strings.Contains(text, "(set by kustomize-controller; applied by Flux Kustomization flux-system/apps)") {
		t.Errorf("text:\n%s", b.String())
	}
}

// Who else writes a service applied from git, and whether git follows its
// policy: a Kustomization without an automation writing the tag is a
// problem (every deploy will be reverted), as is a suspended automation.
func TestBuildGitOps(t *testing.T) {
	cfg, err := config.Parse([]byte("defaults: {namespace: apps}\nservices:\n  - name: api\n"), "gitops.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kustomization := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "apps", "namespace": "flux-system", "generation": int64(1)},
		"spec":     map[string]any{"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
		"status": map[string]any{"observedGeneration": int64(1), "lastAppliedRevision": "main@sha1:0123456789abcdef",
			"conditions": []any{map[string]any{"type": "Ready", "status": "True", "message": "Applied revision: main@sha1:0123456789abcdef"}}},
	}}
	automation := func(suspend bool, source string) unstructured.Unstructured {
		return unstructured.Unstructured{Object: map[string]any{
			"metadata": map[string]any{"name": "flux-system", "namespace": "flux-system", "generation": int64(1)},
			"spec":     map[string]any{"suspend": suspend, "sourceRef": map[string]any{"kind": "GitRepository", "name": source}},
			"status": map[string]any{"observedGeneration": int64(1), "lastPushCommit": "fedcba9876543210", "lastPushTime": "2026-11-25T10:29:00Z",
				"conditions": []any{map[string]any{"type": "Ready", "status": "True", "message": "repository up-to-date"}}},
		}}
	}
	tests := []struct {
		name        string
		automations []unstructured.Unstructured
		problem     string
		row         string
	}{
		{"automation writes the tag", []unstructured.Unstructured{automation(false, "flux-system")}, "", "ImageUpdateAutomation flux-system/flux-system writes the tag (Ready, last push fedcba987654 1m ago)"},
		{"no automation", nil, "no ImageUpdateAutomation writes ImagePolicy flux-system/api's tag to GitRepository flux-system/flux-system: every deploy will be reverted by Flux", "none writes the policy's tag"},
		{"automation of another repository", []unstructured.Unstructured{automation(false, "other")}, "every deploy will be reverted", "none writes"},
		{"suspended automation", []unstructured.Unstructured{automation(true, "flux-system")}, "ImageUpdateAutomation flux-system/flux-system is suspended", "suspended"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture()
			f.deployment("api", 1, []string{reg + "api:sha-1111111"}, complete(1), nil, kpod("api-h1-aaaaa", "h1", "Running", true, 0, time.Minute))
			f.objs.Deployments["apps/api"].Labels = map[string]string{flux.KustomizationNameLabel: "apps", flux.KustomizationNamespaceLabel: "flux-system"}
			f.policy("api", reg+"api:sha-1111111")
			f.objs.Kustomizations = map[string]*unstructured.Unstructured{"flux-system/apps": kustomization}
			f.objs.Automations = map[string][]unstructured.Unstructured{"flux-system": tt.automations}
			r := Build(cfg, cfg.Services, f.objs, Local{}, now)
			svc := r.Services[0]
			if svc.GitOps == nil || svc.GitOps.LastApplied != "main@sha1:0123456789abcdef" {
				t.Fatalf("gitops = %+v", svc.GitOps)
			}
			if tt.problem == "" && len(svc.Problems) > 0 || tt.problem != "" && (len(svc.Problems) != 1 || !strings.Contains(svc.Problems[0], tt.problem)) {
				t.Errorf("problems = %q, want %q", svc.Problems, tt.problem)
			}
			var b bytes.Buffer
			if err := WriteText(&b, r, TextOptions{Details: true}); err != nil {
				t.Fatal(err)
			}
			text := strings.Join(strings.Fields(b.String()), " ") // rows wrap
			if !strings.Contains(text, "git Kustomization flux-system/apps (Ready, applied main@sha1:0123456789abcdef)") || !strings.Contains(text, tt.row) {
				t.Errorf("text lacks the git rows:\n%s", b.String())
			}
		})
	}
}

// A rollback's exclusion that is gone from the ImageRepository (Flux applied
// it from git over autodeploy's edit) is a problem: the bad tag may come
// back.
func TestBuildExclusionLost(t *testing.T) {
	cfg, err := config.Parse([]byte("defaults: {namespace: apps}\nservices:\n  - name: api\n"), "lost.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		list []any
		lost bool
	}{
		{"still there", []any{`^.*\.sig$`, "^sha-2222222$"}, false},
		{"gone", []any{`^.*\.sig$`}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture()
			f.deployment("api", 1, []string{reg + "api:sha-1111111"}, complete(1), nil, kpod("api-h1-aaaaa", "h1", "Running", true, 0, time.Minute))
			f.policy("api", reg+"api:sha-1111111")
			repo := f.objs.Repositories["flux-system/api"]
			repo.Object["spec"] = map[string]any{"exclusionList": tt.list}
			repo.SetAnnotations(map[string]string{gitops.AnnExclusions: `[{"pattern":"^sha-2222222$","tag":"sha-2222222","service":"api","at":"2026-11-25T10:00:00Z"}]`})
			svc := Build(cfg, cfg.Services, f.objs, Local{}, now).Services[0]
			got := len(svc.Problems) == 1 && strings.Contains(svc.Problems[0], "the exclusion of sha-2222222 that autodeploy's rollback added is no longer in ImageRepository flux-system/api's spec.exclusionList")
			if got != tt.lost || !tt.lost && len(svc.Problems) > 0 {
				t.Errorf("problems = %q", svc.Problems)
			}
		})
	}
}

// Whoever may annotate a Deployment (or write the Lease, or a pod's
// status) writes what status shows: control characters reach the
// operator's terminal escaped, never raw (issue 18, item 9).
func TestWriteTextEscapesControlCharacters(t *testing.T) {
	cfg, objs := scenario(t)
	r := Build(cfg, cfg.Services, objs, local(), now)
	const evil = "\x1b]0;pwned\x07\x1b[2J\r\nforged\u202e"
	at := now.Add(-time.Hour)
	s := &r.Services[0]
	s.Problems = append(s.Problems, "problem "+evil)
	s.Hold = &deploy.Hold{By: "by " + evil, Reason: "reason " + evil, At: at}
	s.Failed = &deploy.FailedImage{Image: "img" + evil, Reason: "failed " + evil, RollbackError: "rb " + evil, At: at}
	if s.Rollout != nil {
		s.Rollout.ChangeCause, s.Rollout.Message, s.Rollout.ImageSetBy = "cause "+evil, "msg "+evil, "mgr"+evil
	}
	r.RunInProgress = &lock.Holder{Pid: 1, Since: at, Command: "cmd " + evil}
	r.Log = append(r.Log, "log "+evil)
	saved := color.NoColor
	color.NoColor = true
	defer func() { color.NoColor = saved }()
	var buf bytes.Buffer
	if err := WriteText(&buf, r, TextOptions{Details: true}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, c := range out {
		if c != '\n' && (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == '\u202e') {
			t.Fatalf("raw %U in the output:\n%s", c, out)
		}
	}
	if !strings.Contains(out, `reason`) || strings.Count(out, `\x1b]0;pwned\a\x1b[2J\r\nforged\u202e`) < 10 {
		t.Errorf("the hostile texts are not shown escaped:\n%s", out)
	}
	// What status -o json and later renders read is left as it was.
	if s.Hold.Reason != "reason "+evil {
		t.Errorf("WriteText changed the report: %q", s.Hold.Reason)
	}
}

// The running row names a Lease's holder without "pid 0", and a holder
// that wrote no record as such (issue 18, sixth pass).
func TestRunningRow(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 29, 55, 0, time.UTC)
	for _, tt := range []struct {
		h    lock.Holder
		want string
	}{
		{lock.Holder{Pid: 4242, Since: at, Command: "autodeploy run"}, "running    pid 4242 since 10:29:55 UTC: autodeploy run\n"},
		{lock.Holder{Since: at, Command: "vm/4242: autodeploy run"}, "running    since 10:29:55 UTC: vm/4242: autodeploy run\n"},
		{lock.Holder{}, "running    a process that wrote no holder record: not autodeploy, or one that\n"},
	} {
		cfg, objs := scenario(t)
		r := Build(cfg, cfg.Services, objs, local(), now)
		r.RunInProgress = &tt.h
		var buf bytes.Buffer
		if err := WriteText(&buf, r, TextOptions{}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), tt.want) {
			t.Errorf("holder %+v: want %q in\n%s", tt.h, tt.want, buf.String())
		}
	}
}

// A failed-image or hold record without its date (another writer's) said
// "106751d ago" (issue 18, sixth pass).
func TestFailedRowWithoutADate(t *testing.T) {
	cfg, objs := scenario(t)
	r := Build(cfg, cfg.Services, objs, local(), now)
	r.Services[0].Failed = &deploy.FailedImage{Image: "img", Reason: "ImagePullBackOff"}
	r.Services[0].Hold = &deploy.Hold{By: "alice", Reason: "incident"}
	var buf bytes.Buffer
	if err := WriteText(&buf, r, TextOptions{Details: true}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"failed     img at a time not recorded: ImagePullBackOff", "held       by alice at a time not recorded: incident"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("no %q in\n%s", want, buf.String())
		}
	}
}

// A Lease that cannot be read (the read-only Role of an older autodeploy
// lacked get leases) is said, with the error naming what was refused, in
// the text and in -o json: not shown as "no run in progress" (issue 18,
// item 6).
func TestLeaseUnreadableIsSaid(t *testing.T) {
	cfg, objs := scenario(t)
	l := local()
	l.Holder = nil
	l.HolderErr = errors.New(`cannot read Lease flux-system/autodeploy: leases.coordination.k8s.io "autodeploy" is forbidden`)
	r := Build(cfg, cfg.Services, objs, l, now)
	if r.RunInProgress != nil || !strings.Contains(r.RunInProgressError, "forbidden") {
		t.Fatalf("RunInProgress %+v, RunInProgressError %q", r.RunInProgress, r.RunInProgressError)
	}
	b, _ := json.Marshal(r)
	if !strings.Contains(string(b), `"runInProgressError":"cannot read Lease flux-system/autodeploy`) {
		t.Errorf("-o json lacks the error: %s", b)
	}
	saved := color.NoColor
	color.NoColor = true
	defer func() { color.NoColor = saved }()
	var buf bytes.Buffer
	if err := WriteText(&buf, r, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "running    unknown: cannot read Lease flux-system/autodeploy") {
		t.Errorf("the text does not say it:\n%s", buf.String())
	}
}

// TestBuildDeployWindows: status shows each service's window (text and
// JSON) and the plan it gates, at now (Wednesday 2026-11-25 11:30 in
// Paris).
func TestBuildDeployWindows(t *testing.T) {
	cfg, err := config.Parse([]byte(`defaults: {namespace: apps}
services:
  - name: weekend
    deployWindows: [{cron: "0 9 * * 6", duration: 8h, timeZone: Europe/Paris}]
  - name: office
    deployWindows: [{cron: "0 9 * * 1-5", duration: 8h, timeZone: Europe/Paris}]
  - name: always
`), "windows.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture()
	for _, n := range []string{"weekend", "office", "always"} {
		f.deployment(n, 1, []string{reg + n + ":sha-1111111"}, complete(1), nil, kpod(n+"-h1-aaaaa", "h1", "Running", true, 0, time.Minute))
		f.policy(n, reg+n+":sha-2222222")
	}
	r := Build(cfg, cfg.Services, f.objs, Local{}, now)
	weekend, office, always := r.Services[0], r.Services[1], r.Services[2]
	if w := weekend.Window; w == nil || w.Open || w.NextOpen == nil || !w.NextOpen.Equal(time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)) || w.Next != "Sat 09:00 Europe/Paris" {
		t.Errorf("weekend window %+v", w)
	}
	if n := weekend.NextRun; n == nil || n.Action != "skip" || !strings.Contains(n.Reason, "outside its deploy window, next opens Sat 09:00 Europe/Paris") || len(weekend.Problems) > 0 {
		t.Errorf("weekend next run %+v, problems %q", n, weekend.Problems)
	}
	if w := office.Window; w == nil || !w.Open || w.ClosesAt == nil || !w.ClosesAt.Equal(time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)) {
		t.Errorf("office window %+v", w)
	}
	if n := office.NextRun; n == nil || n.Action != "deploy" {
		t.Errorf("office next run %+v", n)
	}
	if always.Window != nil {
		t.Errorf("a service without windows shows one: %+v", always.Window)
	}
	b, err := json.Marshal(weekend)
	if err != nil || !strings.Contains(string(b), `"deployWindow":{"open":false,"nextOpen":"2026-11-28T08:00:00Z","next":"Sat 09:00 Europe/Paris","windows":["0 9 * * 6 for 8h0m0s (Europe/Paris)"]}`) {
		t.Errorf("JSON %s, %v", b, err)
	}
	var text bytes.Buffer
	if err := WriteText(&text, r, TextOptions{Details: true}); err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(text.String()), " ")
	for _, part := range []string{"window closed, next opens Sat 09:00 Europe/Paris (in 2d", "window open until Wed 17:00 Europe/Paris, next opens Thu 09:00 Europe/Paris"} {
		if !strings.Contains(flat, part) {
			t.Errorf("text lacks %q:\n%s", part, text.String())
		}
	}
}

// TestBuildHoldUntil: a hold with an end shows it (text and JSON); one
// whose end has passed says the next run releases it, and the plan is the
// one without it.
func TestBuildHoldUntil(t *testing.T) {
	cfg, err := config.Parse([]byte("defaults: {namespace: apps}\nservices:\n  - name: frozen\n  - name: thawed\n"), "holds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture()
	hold := func(until string) map[string]string {
		return map[string]string{"autodeploy.dev/hold": `{"by":"alice@host","reason":"freeze","at":"2026-11-25T09:00:00Z","until":"` + until + `"}`}
	}
	f.deployment("frozen", 1, []string{reg + "frozen:sha-1111111"}, complete(1), hold("2026-11-25T11:30:00Z"), kpod("frozen-h1-aaaaa", "h1", "Running", true, 0, time.Minute))
	f.policy("frozen", reg+"frozen:sha-2222222")
	f.deployment("thawed", 1, []string{reg + "thawed:sha-1111111"}, complete(1), hold("2026-11-25T10:00:00Z"), kpod("thawed-h1-aaaaa", "h1", "Running", true, 0, time.Minute))
	f.policy("thawed", reg+"thawed:sha-2222222")
	r := Build(cfg, cfg.Services, f.objs, Local{}, now)
	frozen, thawed := r.Services[0], r.Services[1]
	if n := frozen.NextRun; n == nil || n.Action != "skip" || frozen.Hold == nil {
		t.Errorf("frozen: next run %+v, hold %+v", n, frozen.Hold)
	}
	if n := thawed.NextRun; n == nil || n.Action != "deploy" {
		t.Errorf("thawed: next run %+v; an expired hold holds no more", n)
	}
	b, _ := json.Marshal(frozen)
	if !strings.Contains(string(b), `"until":"2026-11-25T11:30:00Z"`) {
		t.Errorf("JSON lacks until: %s", b)
	}
	var text bytes.Buffer
	if err := WriteText(&text, r, TextOptions{Details: true}); err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(text.String()), " ")
	for _, part := range []string{"held by alice@host 1h30m ago until 11:30:00 UTC (in 1h): freeze", "held by alice@host 1h30m ago until 10:00:00 UTC (expired 30m ago: the next run releases it): freeze"} {
		if !strings.Contains(flat, part) {
			t.Errorf("text lacks %q:\n%s", part, text.String())
		}
	}
}

// Issue 19: status says "soaking, 4m left", then "soaked", for the image
// the Deployment runs (a soak mark of another image is history).
func TestBuildSoak(t *testing.T) {
	cfg, err := config.Parse([]byte("defaults: {namespace: apps, soak: 10m}\nservices:\n  - name: soaking\n  - name: soaked\n  - name: other\n"), "soak.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture()
	mark := func(svc string, passed bool) map[string]string {
		return map[string]string{"autodeploy.dev/verified": "true", "autodeploy.dev/soak": fmt.Sprintf(`{"image":"%s%s:sha-2222222","verifiedAt":"2026-11-25T10:24:00Z","until":"2026-11-25T10:34:00Z","passed":%v}`, reg, svc, passed)}
	}
	for _, svc := range []string{"soaking", "soaked"} {
		f.deployment(svc, 1, []string{reg + svc + ":sha-2222222"}, complete(1), mark(svc, svc == "soaked"), kpod(svc+"-h1-aaaaa", "h1", "Running", true, 0, time.Minute))
		f.policy(svc, reg+svc+":sha-2222222")
	}
	f.deployment("other", 1, []string{reg + "other:sha-1111111"}, complete(1), mark("other", false), kpod("other-h1-aaaaa", "h1", "Running", true, 0, time.Minute))
	f.policy("other", reg+"other:sha-1111111")
	r := Build(cfg, cfg.Services, f.objs, Local{}, now)
	if s := r.Services[0].Soak; s == nil || s.Passed || !s.Until.Equal(time.Date(2026, 11, 25, 10, 34, 0, 0, time.UTC)) {
		t.Errorf("soaking: %+v", s)
	}
	if s := r.Services[1].Soak; s == nil || !s.Passed {
		t.Errorf("soaked: %+v", s)
	}
	if s := r.Services[2].Soak; s != nil {
		t.Errorf("other runs another image than its soak mark's: %+v", s)
	}
	var b bytes.Buffer
	if err := WriteText(&b, r, TextOptions{Details: true}); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(b.String()), " ")
	for _, part := range []string{"soaking, 4m left", "soak " + reg + "soaking:sha-2222222: soaking, 4m left, verified 6m ago", "soaked"} {
		if !strings.Contains(text, part) {
			t.Errorf("text lacks %q:\n%s", part, b.String())
		}
	}
}

// Issue 19: status plans a promoted service from its source, as run does.
func TestBuildPromotion(t *testing.T) {
	cfg, err := config.Parse([]byte("defaults: {namespace: apps}\nservices:\n  - name: staging\n  - name: production\n    promote: {from: staging, after: 30m}\n"), "pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture()
	f.deployment("staging", 1, []string{reg + "staging:sha-2222222"}, complete(1),
		map[string]string{"autodeploy.dev/verified": "true", "autodeploy.dev/soak": `{"image":"` + reg + `staging:sha-2222222","verifiedAt":"2026-11-25T10:24:00Z","until":"2026-11-25T10:24:00Z","passed":true}`},
		kpod("staging-h1-aaaaa", "h1", "Running", true, 0, time.Minute))
	f.policy("staging", reg+"staging:sha-2222222")
	f.deployment("production", 1, []string{reg + "staging:sha-1111111"}, complete(1), nil, kpod("production-h1-bbbbb", "h1", "Running", true, 0, time.Minute))
	r := Build(cfg, cfg.WithSources(cfg.Services[1:]), f.objs, Local{}, now)
	if len(r.Services) != 2 {
		t.Fatalf("WithSources: %d services", len(r.Services))
	}
	p := r.Services[0]
	if p.NextRun == nil || p.NextRun.Action != "skip" || !strings.Contains(p.NextRun.Reason, "is promoted from staging at 2026-11-25 10:54:00") || len(p.Problems) > 0 {
		t.Errorf("production: next run %+v, problems %q", p.NextRun, p.Problems)
	}
	if pr := p.Promotion; pr == nil || pr.From != "staging" || pr.After != 30*time.Minute || pr.SourceImage != reg+"staging:sha-2222222" || pr.SourceVerified == nil {
		t.Errorf("promotion %+v", pr)
	}
	var b bytes.Buffer
	if err := WriteText(&b, r, TextOptions{Details: true}); err != nil {
		t.Fatal(err)
	}
	if text := strings.Join(strings.Fields(b.String()), " "); !strings.Contains(text, "promoted from staging, which runs "+reg+"staging:sha-2222222, verified there 6m ago") {
		t.Errorf("text:\n%s", b.String())
	}
}

// A promotion under GitOps: status shows the ImagePolicy autodeploy owns
// for the target and what git has for it, and checks that an automation
// writes that policy (not the service's own, which it has none of).
func TestBuildPromotionUnderGitOps(t *testing.T) {
	cfg, err := config.Parse([]byte("defaults: {namespace: apps}\nservices:\n  - name: staging\n  - name: production\n    promote: {from: staging}\n"), "pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kustomization := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "apps", "namespace": "flux-system", "generation": int64(1)},
		"spec":     map[string]any{"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
		"status": map[string]any{"observedGeneration": int64(1), "lastAppliedRevision": "main@sha1:0123456789abcdef",
			"conditions": []any{map[string]any{"type": "Ready", "status": "True", "message": "Applied"}}},
	}}
	automation := unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "flux-system", "namespace": "flux-system", "generation": int64(1)},
		"spec":     map[string]any{"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
		"status": map[string]any{"observedGeneration": int64(1),
			"observedPolicies": map[string]any{"autodeploy-production": map[string]any{"name": reg + "staging", "tag": "sha-2222222"}},
			"conditions":       []any{map[string]any{"type": "Ready", "status": "True", "message": "repository up-to-date"}}},
	}}
	for _, tt := range []struct {
		name    string
		owned   func(f *fixture)
		row     string
		problem string
	}{
		{"not created yet", func(*fixture) {}, "promotion ImagePolicy flux-system/autodeploy-production (autodeploy's): created at the first promotion", ""},
		{"autodeploy's", func(f *fixture) {
			f.policy("autodeploy-production", reg+"staging:sha-2222222")
			u := f.objs.Policies["flux-system/autodeploy-production"]
			u.SetLabels(map[string]string{"app.kubernetes.io/managed-by": "autodeploy"})
			u.SetAnnotations(map[string]string{"autodeploy.dev/promotion-of": "production"})
		}, "promotion ImagePolicy flux-system/autodeploy-production (autodeploy's) selects " + reg + "staging:sha-2222222 (Ready); git has sha-2222222", ""},
		{"someone else's", func(f *fixture) { f.policy("autodeploy-production", reg+"staging:sha-2222222") },
			"is not autodeploy's: promotions under GitOps are refused", "ImagePolicy flux-system/autodeploy-production is not autodeploy's"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture()
			f.deployment("staging", 1, []string{reg + "staging:sha-2222222"}, complete(1), nil, kpod("staging-h1-aaaaa", "h1", "Running", true, 0, time.Minute))
			f.policy("staging", reg+"staging:sha-2222222")
			f.deployment("production", 1, []string{reg + "staging:sha-2222222"}, complete(1), nil, kpod("production-h1-bbbbb", "h1", "Running", true, 0, time.Minute))
			f.objs.Deployments["apps/production"].Labels = map[string]string{flux.KustomizationNameLabel: "apps", flux.KustomizationNamespaceLabel: "flux-system"}
			f.objs.Kustomizations = map[string]*unstructured.Unstructured{"flux-system/apps": kustomization}
			f.objs.Automations = map[string][]unstructured.Unstructured{"flux-system": {automation}}
			tt.owned(f)
			r := Build(cfg, cfg.Services[1:], f.objs, Local{}, now)
			p := r.Services[0]
			if p.GitOps == nil || p.GitOps.PromotionPolicy == nil || p.GitOps.Automation == nil {
				t.Fatalf("gitops %+v", p.GitOps)
			}
			if tt.problem == "" && len(p.Problems) > 0 || tt.problem != "" && !strings.Contains(strings.Join(p.Problems, "|"), tt.problem) {
				t.Errorf("problems %q, want %q", p.Problems, tt.problem)
			}
			var b bytes.Buffer
			if err := WriteText(&b, r, TextOptions{Details: true}); err != nil {
				t.Fatal(err)
			}
			if text := strings.Join(strings.Fields(b.String()), " "); !strings.Contains(text, tt.row) || !strings.Contains(text, "ImageUpdateAutomation flux-system/flux-system writes the tag") {
				t.Errorf("text lacks %q:\n%s", tt.row, b.String())
			}
			// Only autodeploy's own policy is its lever, with forget to clear it.
			text := strings.Join(strings.Fields(b.String()), " ")
			lever := strings.Contains(text, "flux lever promotion-policy on ImagePolicy flux-system/autodeploy-production, autodeploy's")
			if want := tt.name == "autodeploy's"; lever != want || want && !strings.Contains(text, "cleared by autodeploy forget production") {
				t.Errorf("promotion lever listed %v, want %v:\n%s", lever, want, b.String())
			}
		})
	}
}

// A mark of autodeploy's set by hand to something it cannot read is taken
// as absent by the run (a garbled failed-image lets it try that image
// again), so status says so, naming the annotation and the fix, and is not
// healthy (issue 18, tenth pass: it said "healthy" and nothing of it).
func TestBuildUnreadableMarks(t *testing.T) {
	cfg, err := config.Parse([]byte("defaults: {namespace: apps}\nservices:\n  - name: api\n"), "marks.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		ann     map[string]string
		problem string // "" when none
	}{
		{"none", nil, ""},
		{"readable", map[string]string{deploy.AnnVerified: "true", deploy.AnnPreviousRevision: "0", deploy.AnnFailedImage: `{"image":"` + reg + `api:sha-0","reason":"x","at":"2026-11-25T10:00:00Z"}`}, ""},
		{"being cleared", map[string]string{deploy.AnnFailedImage: "", deploy.AnnRetry: ""}, ""},
		{"failed-image", map[string]string{deploy.AnnFailedImage: `"str"`}, `unreadable: autodeploy.dev/failed-image="\"str\""`},
		{"verified", map[string]string{deploy.AnnVerified: "maybe"}, `autodeploy.dev/verified="maybe"`},
		{"previous-revision", map[string]string{deploy.AnnPreviousRevision: "-3"}, `autodeploy.dev/previous-revision="-3"`},
		{"retry null", map[string]string{deploy.AnnRetry: "null"}, `autodeploy.dev/retry="null"`},
		{"soak", map[string]string{deploy.AnnSoak: "[1,2]"}, `autodeploy.dev/soak="[1,2]"`},
		{"soak-before", map[string]string{deploy.AnnSoakBefore: `{"x":`}, `autodeploy.dev/soak-before="{\"x\":"`},
		{"escaped", map[string]string{deploy.AnnVerified: "\x1b[31m"}, `autodeploy.dev/verified="\x1b[31m"`},
		{"fix", map[string]string{deploy.AnnVerified: "maybe"}, "kubectl annotate deployment api -n apps autodeploy.dev/verified-"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture()
			f.deployment("api", 1, []string{reg + "api:sha-1111111"}, complete(1), tt.ann, kpod("api-h1-aaaaa", "h1", "Running", true, 0, time.Minute))
			f.policy("api", reg+"api:sha-1111111")
			svc := Build(cfg, cfg.Services, f.objs, Local{}, now).Services[0]
			if tt.problem == "" {
				if len(svc.Problems) > 0 || !svc.OK() {
					t.Errorf("OK %v, problems %q", svc.OK(), svc.Problems)
				}
				return
			}
			if svc.OK() || len(svc.Problems) != 1 || !strings.Contains(svc.Problems[0], tt.problem) {
				t.Errorf("OK %v, problems %q, want one with %q", svc.OK(), svc.Problems, tt.problem)
			}
		})
	}
}

// A hold naming no one (garbled, or written by another hand) said "held
// by at a time not recorded: ..." (issue 18, tenth pass).
func TestHoldRowWithoutBy(t *testing.T) {
	cfg, objs := scenario(t)
	for _, tt := range []struct {
		hold deploy.Hold
		want string
	}{
		{deploy.Hold{Reason: "unreadable hold annotation: {garbage"}, "held       at a time not recorded: unreadable hold annotation: {garbage"},
		{deploy.Hold{By: "bob", Reason: "x"}, "held       by bob at a time not recorded: x"},
	} {
		r := Build(cfg, cfg.Services, objs, local(), now)
		r.Services[0].Hold = &tt.hold
		var buf bytes.Buffer
		if err := WriteText(&buf, r, TextOptions{Details: true}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), tt.want) || strings.Contains(buf.String(), "by at") {
			t.Errorf("no %q in\n%s", tt.want, buf.String())
		}
	}
}
