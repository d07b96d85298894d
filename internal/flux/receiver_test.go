package flux

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
)

// receiver builds a Receiver in flux-system listing resources; ready is
// its Ready condition's status ("" for none).
func receiver(name, ready string, suspend bool, resources ...map[string]any) *unstructured.Unstructured {
	res := make([]any, len(resources))
	for i, r := range resources {
		res[i] = r
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
		"metadata": map[string]any{"name": name, "namespace": "flux-system", "generation": int64(1)},
		"spec":     map[string]any{"type": "github", "resources": res, "suspend": suspend},
	}}
	if ready != "" {
		u.Object["status"] = map[string]any{"observedGeneration": int64(1), "webhookPath": "/hook/abc",
			"conditions": []any{map[string]any{"type": "Ready", "status": ready, "message": "Receiver initialised for path: /hook/abc", "observedGeneration": int64(1)}}}
	}
	return u
}

func imageRepo(name, ns string) map[string]any {
	m := map[string]any{"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository", "name": name}
	if ns != "" {
		m["namespace"] = ns
	}
	return m
}

func TestCoverReceivers(t *testing.T) {
	api := Ref{Namespace: "apps", Name: "api"}
	web := Ref{Namespace: "apps", Name: "web"}
	sys := Ref{Namespace: "flux-system", Name: "sys"}
	labels := map[Ref]map[string]string{api: {"team": "a"}, web: {"team": "b"}}
	tests := []struct {
		name      string
		receivers []*unstructured.Unstructured
		repos     []Ref
		covered   map[Ref]string
		notReady  map[Ref][]string
		uncovered []Ref
		all       bool
	}{
		{name: "no Receiver at all", repos: []Ref{api}, uncovered: []Ref{api}},
		{name: "one Ready Receiver covers both", repos: []Ref{api, web},
			receivers: []*unstructured.Unstructured{receiver("r", "True", false, imageRepo("api", "apps"), imageRepo("web", "apps"))},
			covered:   map[Ref]string{api: "flux-system/r", web: "flux-system/r"}, all: true},
		{name: "a repository left out", repos: []Ref{api, web},
			receivers: []*unstructured.Unstructured{receiver("r", "True", false, imageRepo("api", "apps"))},
			covered:   map[Ref]string{api: "flux-system/r"}, uncovered: []Ref{web}},
		// The controller looks an empty namespace up in the Receiver's own.
		{name: "no namespace means the Receiver's", repos: []Ref{sys, api},
			receivers: []*unstructured.Unstructured{receiver("r", "True", false, imageRepo("sys", ""), imageRepo("api", ""))},
			covered:   map[Ref]string{sys: "flux-system/r"}, uncovered: []Ref{api}},
		{name: "another kind of the same name covers nothing", repos: []Ref{api},
			receivers: []*unstructured.Unstructured{receiver("r", "True", false, map[string]any{"kind": "GitRepository", "name": "api", "namespace": "apps"})},
			uncovered: []Ref{api}},
		{name: "not Ready", repos: []Ref{api},
			receivers: []*unstructured.Unstructured{receiver("r", "False", false, imageRepo("api", "apps"))},
			notReady:  map[Ref][]string{api: {"flux-system/r"}}, uncovered: []Ref{api}},
		{name: "never reconciled", repos: []Ref{api},
			receivers: []*unstructured.Unstructured{receiver("r", "", false, imageRepo("api", "apps"))},
			notReady:  map[Ref][]string{api: {"flux-system/r"}}, uncovered: []Ref{api}},
		// A suspended Receiver answers no webhook.
		{name: "suspended", repos: []Ref{api},
			receivers: []*unstructured.Unstructured{receiver("r", "True", true, imageRepo("api", "apps"))},
			notReady:  map[Ref][]string{api: {"flux-system/r"}}, uncovered: []Ref{api}},
		{name: "a Ready one is enough beside a broken one", repos: []Ref{api},
			receivers: []*unstructured.Unstructured{receiver("a", "False", false, imageRepo("api", "apps")), receiver("b", "True", false, imageRepo("api", "apps"))},
			covered:   map[Ref]string{api: "flux-system/b"}, all: true},
		{name: "wildcard with matching labels", repos: []Ref{api, web},
			receivers: []*unstructured.Unstructured{receiver("r", "True", false, map[string]any{"kind": "ImageRepository", "name": "*", "namespace": "apps", "matchLabels": map[string]any{"team": "a"}})},
			covered:   map[Ref]string{api: "flux-system/r"}, uncovered: []Ref{web}},
		{name: "wildcard with empty matchLabels takes the namespace", repos: []Ref{api, web, sys},
			receivers: []*unstructured.Unstructured{receiver("r", "True", false, map[string]any{"kind": "ImageRepository", "name": "*", "namespace": "apps", "matchLabels": map[string]any{}})},
			covered:   map[Ref]string{api: "flux-system/r", web: "flux-system/r"}, uncovered: []Ref{sys}},
		// notification-controller refuses "*" without matchLabels.
		{name: "wildcard without matchLabels covers nothing", repos: []Ref{api},
			receivers: []*unstructured.Unstructured{receiver("r", "True", false, map[string]any{"kind": "ImageRepository", "name": "*", "namespace": "apps"})},
			uncovered: []Ref{api}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rs []Receiver
			for _, u := range tt.receivers {
				rs = append(rs, ParseReceiver(u))
			}
			got := CoverRepositories(rs, tt.repos, func(r Ref) map[string]string { return labels[r] })
			want := Coverage{Installed: true, Covered: tt.covered, NotReady: tt.notReady, Uncovered: tt.uncovered, Receivers: rs}
			if want.Covered == nil {
				want.Covered = map[Ref]string{}
			}
			if want.NotReady == nil {
				want.NotReady = map[Ref][]string{}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			if got.All() != tt.all {
				t.Errorf("All() = %v, want %v", got.All(), tt.all)
			}
		})
	}
}

func TestParseReceiver(t *testing.T) {
	r := ParseReceiver(receiver("r", "True", false, imageRepo("api", "")))
	want := Receiver{Namespace: "flux-system", Name: "r", Ready: true, Message: "Receiver initialised for path: /hook/abc", WebhookPath: "/hook/abc",
		Resources: []ReceiverResource{{Kind: "ImageRepository", Name: "api", Namespace: "flux-system"}}}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got  %+v\nwant %+v", r, want)
	}
}

// ReceiverCoverage lists the Receivers of each namespace once; a cluster
// without the Receiver CRD answers 404, which is "not installed", not an
// error; any other refusal is an error naming what was listed.
func TestReceiverCoverage(t *testing.T) {
	repo := Ref{Namespace: "apps", Name: "api"}
	gvrs := map[schema.GroupVersionResource]string{ReceiverGVR: "ReceiverList", {Group: ImageGroup, Version: "v1", Resource: "imagerepositories"}: "ImageRepositoryList"}
	repoObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
		"metadata": map[string]any{"name": "api", "namespace": "apps", "labels": map[string]any{"team": "a"}}}}
	repo2 := Ref{Namespace: "apps", Name: "api2"} // the same namespace: listed once
	repo2Obj := repoObj.DeepCopy()
	repo2Obj.SetName("api2")
	wild := receiver("r", "True", false, map[string]any{"kind": "ImageRepository", "name": "*", "namespace": "apps", "matchLabels": map[string]any{"team": "a"}})
	tests := []struct {
		name      string
		objs      []runtime.Object
		listErr   error
		installed bool
		all       bool
		errPart   string
	}{
		{name: "covered, labels read from the repository", objs: []runtime.Object{wild, repoObj, repo2Obj}, installed: true, all: true},
		{name: "no Receiver", objs: []runtime.Object{repoObj, repo2Obj}, installed: true},
		{name: "CRD not installed", listErr: apierrors.NewNotFound(schema.GroupResource{Group: ReceiverGVR.Group, Resource: "receivers"}, ""), installed: false},
		{name: "forbidden", listErr: apierrors.NewForbidden(schema.GroupResource{Group: ReceiverGVR.Group, Resource: "receivers"}, "", errors.New("no")),
			installed: true, errPart: "list Receivers in flux-system"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dc := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), gvrs, tt.objs...)
			lists := map[string]int{}
			dc.PrependReactor("list", "receivers", func(a k8stesting.Action) (bool, runtime.Object, error) {
				lists[a.GetNamespace()]++
				if tt.listErr != nil {
					return true, nil, tt.listErr
				}
				return false, nil, nil
			})
			cov, err := ReceiverCoverage(context.Background(), dc, API{Version: "v1"}, "flux-system", []Ref{repo, repo2})
			if tt.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("err %v, want %q", err, tt.errPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cov.Installed != tt.installed || cov.All() != tt.all {
				t.Errorf("installed %v all %v, want %v %v: %+v", cov.Installed, cov.All(), tt.installed, tt.all, cov)
			}
			for ns, n := range lists {
				if n > 1 {
					t.Errorf("Receivers in %s listed %d times", ns, n)
				}
			}
		})
	}
}

func TestRepositoriesOf(t *testing.T) {
	ps := []Policy{
		{Name: "a", RepoNamespace: "apps", RepoName: "api"},
		{Name: "b", RepoNamespace: "apps", RepoName: "api"}, // two policies over one repository
		{Name: "c", RepoNamespace: "other", RepoName: "api"},
		{Name: "d"}, // no imageRepositoryRef
	}
	got := RepositoriesOf(ps)
	want := []Ref{{Namespace: "apps", Name: "api"}, {Namespace: "other", Name: "api"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if s := RefList(got); s != "apps/api, other/api" {
		t.Errorf("RefList = %q", s)
	}
	if ns := ReceiverNamespaces("flux-system", append(got, Ref{Namespace: "flux-system", Name: "x"})); !reflect.DeepEqual(ns, []string{"flux-system", "apps", "other"}) {
		t.Errorf("ReceiverNamespaces = %v", ns)
	}
}
