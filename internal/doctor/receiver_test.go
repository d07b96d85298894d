package doctor

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"github.com/autodeploy-dev/autodeploy/internal/status"
)

func fluxObject(kind, ns, name string, spec, st map[string]any) *unstructured.Unstructured {
	group := flux.ImageGroup + "/v1"
	if kind == "Receiver" {
		group = flux.ReceiverGVR.GroupVersion().String()
	}
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": group, "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": ns, "generation": int64(1)}, "spec": spec}}
	if st != nil {
		u.Object["status"] = st
	}
	return u
}

func readyStatus(ok string) map[string]any {
	return map[string]any{"observedGeneration": int64(1), "conditions": []any{
		map[string]any{"type": "Ready", "status": ok, "message": "secret 'flux-system/autodeploy-token' not found", "observedGeneration": int64(1)}}}
}

func receiverOf(name, ready string, repos ...string) *unstructured.Unstructured {
	var res []any
	for _, r := range repos {
		ns, n, _ := strings.Cut(r, "/")
		res = append(res, map[string]any{"apiVersion": flux.ImageGroup + "/v1", "kind": "ImageRepository", "name": n, "namespace": ns})
	}
	return fluxObject("Receiver", "flux-system", name, map[string]any{"type": "github", "resources": res}, readyStatus(ready))
}

// One line per problem, naming the repositories and the fix; no Receiver
// CRD, or no Receiver at all, is a warning (runs from cron rescan
// themselves); a Receiver set up that misses a repository or is not Ready
// fails.
func TestReceiverCheck(t *testing.T) {
	c, err := config.Parse([]byte("services:\n  - name: api\n    imagePolicy: flux-system/api\n  - name: web\n    imagePolicy: apps/web\n  - name: gone\n    imagePolicy: apps/gone\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs := status.Objects{Policies: map[string]*unstructured.Unstructured{
		"flux-system/api": fluxObject("ImagePolicy", "flux-system", "api", map[string]any{"imageRepositoryRef": map[string]any{"name": "api"}}, nil),
		"apps/web":        fluxObject("ImagePolicy", "apps", "web", map[string]any{"imageRepositoryRef": map[string]any{"name": "web"}}, nil),
	}}
	notFound := apierrors.NewNotFound(schema.GroupResource{Group: flux.NotificationGroup, Resource: "receivers"}, "")
	tests := []struct {
		name    string
		objs    []runtime.Object
		listErr error
		want    []Check // Detail and Fix: substrings
	}{
		{name: "all covered and Ready", objs: []runtime.Object{receiverOf("autodeploy", "True", "flux-system/api", "apps/web")},
			want: []Check{{Status: OK, Detail: "Receiver flux-system/autodeploy lists every configured ImageRepository (flux-system/api, apps/web) and is Ready"}}},
		{name: "CRD not installed", listErr: notFound,
			want: []Check{{Status: Warn, Detail: "serves no Flux Receiver", Fix: "autodeploy manifests receiver | kubectl apply --server-side -f -"}}},
		{name: "no Receiver", want: []Check{{Status: Warn, Detail: "no Receiver lists the ImageRepositories flux-system/api, apps/web", Fix: "autodeploy manifests receiver | kubectl apply --server-side -f -"}}},
		{name: "one repository left out", objs: []runtime.Object{receiverOf("autodeploy", "True", "flux-system/api")},
			want: []Check{{Status: Fail, Detail: "no Ready Receiver lists the ImageRepository apps/web", Fix: "autodeploy manifests receiver | kubectl apply --server-side -f -"}}},
		{name: "not Ready", objs: []runtime.Object{receiverOf("autodeploy", "False", "flux-system/api", "apps/web")},
			want: []Check{{Status: Fail, Detail: "Receiver flux-system/autodeploy (for flux-system/api, apps/web) is not Ready: secret 'flux-system/autodeploy-token' not found", Fix: "kubectl -n flux-system describe receiver autodeploy"}}},
		{name: "cannot list", listErr: apierrors.NewForbidden(schema.GroupResource{Group: flux.NotificationGroup, Resource: "receivers"}, "", nil),
			want: []Check{{Status: Warn, Detail: "list Receivers in flux-system", Fix: "list on receivers.notification.toolkit.fluxcd.io"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dc := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{flux.ReceiverGVR: "ReceiverList"}, tt.objs...)
			if tt.listErr != nil {
				dc.PrependReactor("list", "receivers", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tt.listErr })
			}
			r := &Report{}
			receivers(context.Background(), r, c, &kube.Clients{Dynamic: dc, Config: &rest.Config{}}, flux.API{Version: "v1"}, objs)
			if len(r.Checks) != len(tt.want) {
				t.Fatalf("checks %+v, want %d", r.Checks, len(tt.want))
			}
			for i, w := range tt.want {
				g := r.Checks[i]
				if g.Name != "receiver" || g.Status != w.Status || !strings.Contains(g.Detail, w.Detail) || !strings.Contains(g.Fix, w.Fix) {
					t.Errorf("check %+v\nwant %+v", g, w)
				}
			}
			if r.Failed != (tt.want[0].Status == Fail) {
				t.Errorf("Failed = %v", r.Failed)
			}
		})
	}
}
