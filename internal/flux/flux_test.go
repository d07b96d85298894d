package flux

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
)

func policy(gen int64, status map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy",
		"metadata": map[string]any{"name": "api", "namespace": "flux-system", "generation": gen},
		"spec":     map[string]any{"imageRepositoryRef": map[string]any{"name": "api-repo"}},
	}}
	if status != nil {
		u.Object["status"] = status
	}
	return u
}

func ready(status string, gen int64) map[string]any {
	return map[string]any{"type": "Ready", "status": status, "message": "msg", "observedGeneration": gen}
}

func TestParsePolicy(t *testing.T) {
	digest := "sha256:" + strings.Repeat("a", 64)
	tests := []struct {
		name   string
		u      *unstructured.Unstructured
		latest string
		ready  bool
		msg    string
	}{
		{name: "latestRef tag", u: policy(1, map[string]any{"observedGeneration": int64(1), "latestRef": map[string]any{"name": "ghcr.io/x/api", "tag": "sha-1"}, "conditions": []any{ready("True", 1)}}),
			latest: "ghcr.io/x/api:sha-1", ready: true, msg: "msg"},
		{name: "latestRef digest (digestReflectionPolicy)", u: policy(1, map[string]any{"latestRef": map[string]any{"name": "ghcr.io/x/api", "tag": "main", "digest": digest}, "conditions": []any{ready("True", 1)}}),
			latest: "ghcr.io/x/api:main@" + digest, ready: true, msg: "msg"},
		{name: "v1beta1 latestImage", u: policy(1, map[string]any{"latestImage": "ghcr.io/x/api:sha-1", "conditions": []any{map[string]any{"type": "Ready", "status": "True", "message": "ok"}}}),
			latest: "ghcr.io/x/api:sha-1", ready: true, msg: "ok"},
		{name: "not ready", u: policy(1, map[string]any{"observedGeneration": int64(1), "conditions": []any{ready("False", 1)}}), ready: false, msg: "msg"},
		{name: "never reconciled", u: policy(1, nil), ready: false, msg: "no Ready condition yet"},
		// After a spec change, the old Ready says nothing about the new spec.
		{name: "status of an older generation", u: policy(2, map[string]any{"observedGeneration": int64(1), "latestRef": map[string]any{"name": "ghcr.io/x/api", "tag": "sha-1"}, "conditions": []any{ready("True", 1)}}),
			latest: "ghcr.io/x/api:sha-1", ready: false, msg: "Flux has not reconciled generation 2 yet (it observed 1)"},
		{name: "condition of an older generation", u: policy(2, map[string]any{"latestRef": map[string]any{"name": "ghcr.io/x/api", "tag": "sha-1"}, "conditions": []any{ready("True", 1)}}),
			latest: "ghcr.io/x/api:sha-1", ready: false, msg: "Ready condition is for generation 1, not 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ParsePolicy(tt.u)
			if p.Latest != tt.latest || p.Ready != tt.ready || !strings.Contains(p.Message, tt.msg) {
				t.Errorf("ParsePolicy = latest %q ready %v msg %q; want %q %v %q", p.Latest, p.Ready, p.Message, tt.latest, tt.ready, tt.msg)
			}
			if p.RepoName != "api-repo" || p.RepoNamespace != "flux-system" {
				t.Errorf("repository = %s/%s", p.RepoNamespace, p.RepoName)
			}
		})
	}
}

// blockingDiscovery answers ServerGroups only when released: a hung API
// server.
type blockingDiscovery struct {
	*fakediscovery.FakeDiscovery
	release chan struct{}
}

func (b blockingDiscovery) ServerGroups() (*metav1.APIGroupList, error) {
	<-b.release
	return b.FakeDiscovery.ServerGroups()
}

func TestDetect(t *testing.T) {
	fd := &fakediscovery.FakeDiscovery{Fake: &k8stesting.Fake{}}
	fd.Resources = []*metav1.APIResourceList{
		{GroupVersion: "image.toolkit.fluxcd.io/v1beta2"},
		{GroupVersion: "image.toolkit.fluxcd.io/v1"},
	}
	api, err := Detect(context.Background(), fd)
	if err != nil || api.Version != "v1" || !api.PolicyReconcile() {
		t.Fatalf("Detect = %+v, %v; want v1", api, err)
	}
	fd.Resources = []*metav1.APIResourceList{{GroupVersion: "apps/v1"}}
	if _, err := Detect(context.Background(), fd); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("Detect without Flux = %v", err)
	}
	// A signal while discovery hangs ends the wait at once.
	b := blockingDiscovery{FakeDiscovery: fd, release: make(chan struct{})}
	defer close(b.release)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Detect(ctx, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("Detect on a cancelled context = %v", err)
	}
}

var reposGVR = schema.GroupVersionResource{Group: ImageGroup, Version: "v1", Resource: "imagerepositories"}

func repo(name string, suspend bool) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
		"metadata": map[string]any{"name": name, "namespace": "flux-system", "generation": int64(1)},
		"spec":     map[string]any{"image": "ghcr.io/x/" + name, "suspend": suspend},
	}}
}

// TestReconcile plays the controller from a reactor on the PATCH that asks
// for a rescan: it answers (or not) by writing status, which the watch
// carries back.
func TestReconcile(t *testing.T) {
	const token = "2026-11-26T10:00:00Z"
	answer := func(ready string) func(c *dynamicfake.FakeDynamicClient, name string) {
		return func(c *dynamicfake.FakeDynamicClient, name string) {
			u := repo(name, false)
			u.Object["status"] = map[string]any{"observedGeneration": int64(1), "lastHandledReconcileAt": token, "conditions": []any{ready_(ready)}}
			if err := c.Tracker().Update(reposGVR, u, "flux-system"); err != nil {
				panic(err)
			}
		}
	}
	tests := []struct {
		name       string
		objs       []runtime.Object
		controller func(c *dynamicfake.FakeDynamicClient, name string) // nil: never answers
		breakWatch bool
		ok         bool
		problem    string
	}{
		{name: "answered", objs: []runtime.Object{repo("api", false)}, controller: answer("True"), ok: true},
		{name: "answered not Ready", objs: []runtime.Object{repo("api", false)}, controller: answer("False"), problem: "not Ready after rescan: scan failed"},
		{name: "suspended is not asked", objs: []runtime.Object{repo("api", true)}, problem: "suspended"},
		{name: "missing", problem: "not found"},
		{name: "never answered", objs: []runtime.Object{repo("api", false)}, problem: "no answer to the reconcile request"},
		{name: "a broken watch is watched again", objs: []runtime.Object{repo("api", false)}, controller: answer("True"), breakWatch: true, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scheme := runtime.NewScheme()
			c := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{reposGVR: "ImageRepositoryList"}, tt.objs...)
			patched := false
			c.PrependReactor("patch", "imagerepositories", func(a k8stesting.Action) (bool, runtime.Object, error) {
				patched = true
				return false, nil, nil
			})
			watches := 0
			c.PrependWatchReactor("imagerepositories", func(a k8stesting.Action) (bool, watch.Interface, error) {
				watches++
				if tt.breakWatch && watches == 1 {
					w := watch.NewFake()
					go w.Error(&metav1.Status{Code: 410, Reason: metav1.StatusReasonExpired})
					return true, w, nil
				}
				if tt.controller != nil {
					// The controller answers once the watch is there; the
					// tracker replays it to the new watcher.
					tt.controller(c, "api")
				}
				return false, nil, nil
			})
			timeout := 5 * time.Second
			if tt.controller == nil {
				timeout = 200 * time.Millisecond // the "never answered" case ends on this bound
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			out := Reconcile(ctx, c, reposGVR, []Ref{{Namespace: "flux-system", Name: "api"}}, token)
			if len(out) != 1 || out[0].OK != tt.ok || !strings.Contains(out[0].Problem, tt.problem) {
				t.Fatalf("Reconcile = %+v; want ok %v, problem %q", out, tt.ok, tt.problem)
			}
			if want := tt.name == "never answered"; out[0].NoAnswer != want {
				t.Errorf("NoAnswer = %v, want %v", out[0].NoAnswer, want)
			}
			if suspendedOrMissing := strings.Contains(tt.problem, "suspended") || tt.problem == "not found"; patched == suspendedOrMissing {
				t.Errorf("patched = %v for %s", patched, tt.name)
			}
		})
	}
}

func ready_(status string) map[string]any {
	return map[string]any{"type": "Ready", "status": status, "message": "scan failed: 503", "observedGeneration": int64(1)}
}

var policiesGVR = schema.GroupVersionResource{Group: ImageGroup, Version: "v1", Resource: "imagepolicies"}

// AwaitPolicies judges a policy against its repository's scan: a write
// that keeps the old tag (Flux 2.6 writes one on the repository's progress
// write, before the scan) does not end the wait; the write selecting the
// scan's tag does.
func TestAwaitPoliciesJudgesAgainstTheScan(t *testing.T) {
	pol := func(name, rv, tag string) *unstructured.Unstructured {
		u := policy(1, map[string]any{"latestRef": map[string]any{"name": "ghcr.io/acme/" + name, "tag": tag}})
		u.SetName(name)
		u.SetResourceVersion(rv)
		return u
	}
	api := Ref{Namespace: "flux-system", Name: "api"}
	for _, tc := range []struct {
		name   string
		want   Awaited
		events []*unstructured.Unstructured // written after the LIST, in order
		lags   []Lag
	}{
		{
			name:   "old tag first, then the scan's",
			want:   Awaited{Ref: api, Tag: "sha-2"},
			events: []*unstructured.Unstructured{pol("api", "11", "sha-1"), pol("api", "12", "sha-2")},
		},
		{
			name:   "never the scan's tag: the bound ends the wait",
			want:   Awaited{Ref: api, Tag: "sha-2"},
			events: []*unstructured.Unstructured{pol("api", "11", "sha-1")},
			lags:   []Lag{{Ref: api, Tag: "sha-2", Selected: "sha-1"}},
		},
		{
			name:   "off the failed tag",
			want:   Awaited{Ref: api, Off: "sha-1"},
			events: []*unstructured.Unstructured{pol("api", "11", "sha-1"), pol("api", "12", "sha-0")},
		},
		{
			name:   "the scan does not tell: the first write after the LIST",
			want:   Awaited{Ref: api},
			events: []*unstructured.Unstructured{pol("api", "11", "sha-1")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{policiesGVR: "ImagePolicyList"}, pol("api", "10", "sha-1"))
			// Every event is queued before the wait starts: no timing.
			fw := watch.NewFakeWithChanSize(len(tc.events), false)
			for _, e := range tc.events {
				fw.Modify(e)
			}
			c.PrependWatchReactor("imagepolicies", func(k8stesting.Action) (bool, watch.Interface, error) { return true, fw, nil })
			bound := time.Minute
			if tc.lags != nil {
				bound = 100 * time.Millisecond
			}
			lags := AwaitPolicies(context.Background(), c, policiesGVR, []Awaited{tc.want}, bound)
			if fmt.Sprint(lags) != fmt.Sprint(tc.lags) {
				t.Errorf("lags = %v, want %v", lags, tc.lags)
			}
			if n := len(fw.ResultChan()); tc.lags == nil && n != 0 {
				t.Errorf("returned with %d writes unread: an earlier write ended the wait", n)
			}
		})
	}
}

// A policy that already selects the scan's tag is not watched for.
func TestAwaitPoliciesAlreadyThere(t *testing.T) {
	u := policy(1, map[string]any{"latestImage": "ghcr.io/acme/api:sha-2"})
	u.SetResourceVersion("10")
	c := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{policiesGVR: "ImagePolicyList"}, u)
	c.PrependWatchReactor("imagepolicies", func(k8stesting.Action) (bool, watch.Interface, error) {
		t.Error("watched a policy that already selects its tag")
		return false, nil, nil
	})
	if lags := AwaitPolicies(context.Background(), c, policiesGVR, []Awaited{{Ref: Ref{Namespace: "flux-system", Name: "api"}, Tag: "sha-2"}}, time.Minute); lags != nil {
		t.Errorf("lags = %v", lags)
	}
}
