package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

var policies = schema.GroupVersionResource{Group: flux.ImageGroup, Version: "v1", Resource: "imagepolicies"}

// The predicate, table-driven: only another selected image is a reason to
// act (image-automation-controller's own predicate on status.latestRef).
func TestLatestChanged(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, cur string
		want     bool
	}{
		{"new tag", "ghcr.io/acme/api:sha-1", "ghcr.io/acme/api:sha-2", true},
		{"new digest of the same tag", "ghcr.io/acme/api:v1@sha256:aa", "ghcr.io/acme/api:v1@sha256:bb", true},
		{"first selection", "", "ghcr.io/acme/api:sha-1", true},
		{"same image (a condition or lastHandledReconcileAt changed)", "ghcr.io/acme/api:sha-1", "ghcr.io/acme/api:sha-1", false},
		{"selection cleared (no tag matches any more)", "ghcr.io/acme/api:sha-1", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := LatestChanged(flux.Policy{Latest: tc.old}, flux.Policy{Latest: tc.cur}); got != tc.want {
				t.Errorf("LatestChanged(%q, %q) = %v, want %v", tc.old, tc.cur, got, tc.want)
			}
		})
	}
}

func policy(ns, name, tag string, rv int) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy",
		"metadata": map[string]any{"namespace": ns, "name": name, "resourceVersion": fmt.Sprint(rv)},
		"spec":     map[string]any{"imageRepositoryRef": map[string]any{"name": name}},
	}}
	if tag != "" {
		u.Object["status"] = map[string]any{"latestRef": map[string]any{"name": "ghcr.io/acme/" + name, "tag": tag}}
	}
	return u
}

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(`schedule: "0 0 1 1 *"
flux: {namespace: flux-system}
services:
  - {name: api, namespace: prod}
  - {name: api-canary, namespace: prod, imagePolicy: flux-system/api}
  - {name: web, namespace: prod}
`), "config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

type recorder struct {
	mu      sync.Mutex
	actions chan Action
}

func (r *recorder) act(_ context.Context, a Action) { r.actions <- a }

func (r *recorder) next(t *testing.T) Action {
	t.Helper()
	select {
	case a := <-r.actions:
		return a
	case <-time.After(10 * time.Second): // a bound on a failing test, not a synchronisation
		t.Fatal("no action")
		return Action{}
	}
}

func (r *recorder) none(t *testing.T) {
	t.Helper()
	select {
	case a := <-r.actions:
		t.Fatalf("unexpected action %+v", a)
	default:
	}
}

type fixture struct {
	dyn   *dynamicfake.FakeDynamicClient
	disco *fakediscovery.FakeDiscovery
	rec   *recorder
	log   *kubetest.Lines
	w     *Watcher
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{policies: "ImagePolicyList", flux.ReceiverGVR: "ReceiverList"}, objs...)
	disco := &fakediscovery.FakeDiscovery{Fake: &k8stesting.Fake{}}
	disco.Resources = []*metav1.APIResourceList{{GroupVersion: "image.toolkit.fluxcd.io/v1", APIResources: []metav1.APIResource{{Name: "imagepolicies", Namespaced: true, Kind: "ImagePolicy"}}}}
	f := &fixture{dyn: dyn, disco: disco, rec: &recorder{actions: make(chan Action, 16)}, log: kubetest.NewLines()}
	f.w = &Watcher{Config: testConfig(t), Dynamic: dyn, Discovery: disco, Act: f.rec.act, Retry: time.Millisecond,
		Log: slog.New(slog.NewTextHandler(f.log, nil))}
	return f
}

func (f *fixture) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (f *fixture) logText() string { return f.log.String() }

func (f *fixture) update(t *testing.T, u *unstructured.Unstructured) {
	t.Helper()
	if _, err := f.dyn.Resource(policies).Namespace(u.GetNamespace()).Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A start pass, then one action per latestRef change for the services of
// that policy only; a status write that selects the same image is not one.
func TestWatchActsOnLatestRefChanges(t *testing.T) {
	f := newFixture(t, policy("flux-system", "api", "sha-1", 1), policy("flux-system", "web", "sha-1", 1))
	f.start(t)
	if a := f.rec.next(t); a.Trigger != TriggerStart || a.Services != nil {
		t.Fatalf("first action = %+v, want the start pass of every service", a)
	}
	p := policy("flux-system", "api", "sha-1", 2)
	p.Object["status"].(map[string]any)["lastHandledReconcileAt"] = "now"
	f.update(t, p) // same image
	f.update(t, policy("flux-system", "api", "sha-2", 3))
	a := f.rec.next(t)
	if a.Trigger != TriggerPolicy || strings.Join(a.Services, ",") != "api,api-canary" || strings.Join(a.Policies, ",") != "flux-system/api" || a.Seen.IsZero() {
		t.Fatalf("action = %+v, want api and api-canary for flux-system/api", a)
	}
	f.update(t, policy("flux-system", "web", "sha-2", 2))
	if a := f.rec.next(t); strings.Join(a.Services, ",") != "web" {
		t.Fatalf("action = %+v, want web", a)
	}
	f.rec.none(t)
	if n := strings.Count(f.logText(), "watch: watching 2 ImagePolicies"); n != 1 {
		t.Errorf("log:\n%s\nwant one watching line", f.logText())
	}
}

// Changes that arrive while an action runs are gathered into the next one.
func TestWatchGathersChangesDuringAnAction(t *testing.T) {
	f := newFixture(t, policy("flux-system", "api", "sha-1", 1), policy("flux-system", "web", "sha-1", 1))
	release := make(chan struct{})
	inner := f.rec.act
	f.w.Act = func(ctx context.Context, a Action) {
		inner(ctx, a)
		if a.Trigger == TriggerStart {
			<-release
		}
	}
	delivered := make(chan string, 8)
	f.w.changedHook = func(key string) { delivered <- key }
	f.start(t)
	f.rec.next(t)
	f.update(t, policy("flux-system", "api", "sha-2", 2))
	f.update(t, policy("flux-system", "web", "sha-2", 2))
	f.update(t, policy("flux-system", "api", "sha-3", 3))
	// All three changes are delivered before the start pass ends.
	for range 3 {
		<-delivered
	}
	close(release)
	if a := f.rec.next(t); strings.Join(a.Services, ",") != "api,api-canary,web" {
		t.Fatalf("action = %+v, want one action for both policies", a)
	}
	f.rec.none(t)
}

// Broken watches and failing lists: the informer lists and watches again;
// the log says "lost" once for any number of failures, naming the server
// and kubeconfig as exit 3 does, its password never (issue 18, sixth pass:
// the line named no server), then "back".
func TestWatchSurvivesBrokenWatchesAndSaysSoOnce(t *testing.T) {
	f := newFixture(t, policy("flux-system", "api", "sha-1", 1), policy("flux-system", "web", "sha-1", 1))
	f.w.Server, f.w.Kubeconfig = "https://admin:s3cret@127.0.0.1:6443", "/etc/autodeploy/kubeconfig"
	var mu sync.Mutex
	failing := false
	var watchers []apiwatch.Interface
	started := make(chan struct{}, 100)
	f.dyn.PrependWatchReactor("imagepolicies", func(a k8stesting.Action) (bool, apiwatch.Interface, error) {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return true, nil, errors.New(`Get "https://admin:s3cret@127.0.0.1:6443/apis": connection refused`)
		}
		wi, err := f.dyn.Tracker().Watch(policies, a.GetNamespace())
		watchers = append(watchers, wi)
		started <- struct{}{}
		return true, wi, err
	})
	f.dyn.PrependReactor("list", "imagepolicies", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return true, nil, errors.New(`Get "https://admin:s3cret@127.0.0.1:6443/apis": connection refused`)
		}
		return false, nil, nil
	})
	f.start(t)
	f.rec.next(t)
	mu.Lock()
	failing = true
	watchers[0].Stop() // the API server went away: the watch ends
	for len(started) > 0 {
		<-started
	}
	mu.Unlock()
	f.log.WaitFor(t, 0, "lost the API server at https://admin:redacted@127.0.0.1:6443 (kubeconfig /etc/autodeploy/kubeconfig) or Flux's API")
	if strings.Contains(f.logText(), "s3cret") {
		t.Errorf("the kubeconfig's password is in the log:\n%s", f.logText())
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	f.log.WaitFor(t, 0, "back:")
	<-started // watching again: a change now is delivered
	f.update(t, policy("flux-system", "api", "sha-2", 5))
	if a := f.rec.next(t); strings.Join(a.Services, ",") != "api,api-canary" {
		t.Fatalf("after the outage: %+v", a)
	}
	if n := strings.Count(f.logText(), "lost the API server"); n != 1 {
		t.Errorf("%d lost lines, want 1:\n%s", n, f.logText())
	}
}

// Flux's CRDs missing at the start: one line, then the watch starts when
// they appear.
func TestWatchWaitsForFluxsAPI(t *testing.T) {
	f := newFixture(t, policy("flux-system", "api", "sha-1", 1))
	var missing atomic.Bool
	missing.Store(true)
	f.disco.PrependReactor("get", "group", func(k8stesting.Action) (bool, runtime.Object, error) {
		if missing.Load() {
			return true, nil, flux.ErrNotInstalled
		}
		return false, nil, nil
	})
	f.start(t)
	f.log.WaitFor(t, 0, "lost the API server or Flux's API")
	missing.Store(false)
	if a := f.rec.next(t); a.Trigger != TriggerStart {
		t.Fatalf("action = %+v", a)
	}
	if n := strings.Count(f.logText(), "lost"); n != 1 {
		t.Errorf("log:\n%s\nwant one lost line however many retries", f.logText())
	}
}

// The record round-trips through a Lease holder's "identity: command".
func TestStateRecord(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	s := State{Since: t0, LastEvent: t0.Add(time.Minute), Event: "policy-change flux-system/api", LastPass: t0.Add(2 * time.Minute)}
	got, ok := ParseRecord("host-a/42: " + s.Record())
	if !ok || got != s {
		t.Fatalf("ParseRecord(%q) = %+v, %v; want %+v", s.Record(), got, ok, s)
	}
	if _, ok := ParseRecord("pid 7, autodeploy run 20261203T060000-ab12"); ok {
		t.Error("a run's record read as a watch's")
	}
}

// Without a Receiver the watch says at its start that pushes wait for the
// scan interval, naming the repositories; a Ready one that lists them
// silences it.
func TestWatchWarnsWithoutAReceiver(t *testing.T) {
	f := newFixture(t, policy("flux-system", "api", "sha-1", 1), policy("flux-system", "web", "sha-1", 1))
	f.start(t)
	f.rec.next(t)
	f.log.WaitFor(t, 0, "no Ready Flux Receiver lists these ImageRepositories")
	if !strings.Contains(f.logText(), "repositories=\"flux-system/api, flux-system/web\"") {
		t.Errorf("log:\n%s", f.logText())
	}

	receiver := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
		"metadata": map[string]any{"namespace": "flux-system", "name": "ghcr"},
		"spec": map[string]any{"type": "github", "resources": []any{
			map[string]any{"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository", "name": "api"},
			map[string]any{"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository", "name": "web"},
		}},
		"status": map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "True"}}},
	}}
	g := newFixture(t, policy("flux-system", "api", "sha-1", 1), policy("flux-system", "web", "sha-1", 1), receiver)
	g.start(t)
	g.rec.next(t)
	if strings.Contains(g.logText(), "Receiver") {
		t.Errorf("covered by a Ready Receiver, yet:\n%s", g.logText())
	}
}

// The lost line explains the error as exit 3 does: client-go's "unexpected
// error when reading response body. Please retry." of a body cut short was
// logged raw (issue 18, sixth pass).
func TestWatchLostLineExplainsTheError(t *testing.T) {
	f := newFixture(t, policy("flux-system", "api", "sha-1", 1))
	f.w.Server, f.w.Kubeconfig = "https://127.0.0.1:6443", "/etc/autodeploy/kubeconfig"
	f.w.Classify = (&kube.Clients{Config: &rest.Config{Host: f.w.Server, Timeout: 2 * time.Second}, Source: f.w.Kubeconfig}).Classify
	var cut atomic.Bool
	cut.Store(true)
	f.dyn.PrependReactor("list", "imagepolicies", func(k8stesting.Action) (bool, runtime.Object, error) {
		if cut.Load() {
			// client-go's rest.Result of a body that ended early.
			return true, nil, fmt.Errorf("unexpected error when reading response body. Please retry. Original error: %w", io.ErrUnexpectedEOF)
		}
		return false, nil, nil
	})
	f.start(t)
	i := f.log.WaitFor(t, 0, "lost the API server")
	cut.Store(false)
	line := strings.Split(f.logText(), "\n")[i]
	if !strings.Contains(line, "its answer was cut short") || strings.Contains(line, "Please retry") {
		t.Errorf("lost line: %s\nwant exit 3's explanation (its answer was cut short), not client-go's text", line)
	}
	// The line names the server once: the explanation's own naming
	// repeated it (issue 18, seventh pass).
	if n := strings.Count(line, "127.0.0.1:6443"); n != 1 {
		t.Errorf("lost line names the server %d times: %s", n, line)
	}
	if a := f.rec.next(t); a.Trigger != TriggerStart {
		t.Fatalf("action = %+v", a)
	}
}
