package flux

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

// A digest-pinned policy keeps its tag while the digest moves: the
// automation's last run wrote main@sha256:aaa, so a wait for the new build
// main@sha256:bbb must not end at once (issue 17, item 6), while one for
// what it wrote does.
func TestAwaitAutomationComparesDigests(t *testing.T) {
	api := API{Version: "v1"}
	gvr := api.Automations()
	auto := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gvr.Group + "/" + gvr.Version, "kind": "ImageUpdateAutomation",
		"metadata": map[string]any{"name": "flux-system", "namespace": "flux-system"},
		"spec":     map[string]any{"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
		"status": map[string]any{
			"conditions":       []any{map[string]any{"type": "Ready", "status": "True"}},
			"observedPolicies": map[string]any{"api": map[string]any{"name": "ghcr.io/x/api", "tag": "main", "digest": "sha256:aaa"}},
		},
	}}
	dc := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{gvr: "ImageUpdateAutomationList"}, auto)
	src := Ref{Namespace: "flux-system", Name: "flux-system"}
	if err := AwaitAutomation(context.Background(), dc, api, "flux-system", src, "api", ObservedRef("main", "sha256:aaa")); err != nil {
		t.Fatalf("the build it wrote: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := AwaitAutomation(ctx, dc, api, "flux-system", src, "api", ObservedRef("main", "sha256:bbb")); err == nil {
		t.Fatal("a new build under the same tag counted as written")
	}
}
