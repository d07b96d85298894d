package gitops

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
)

func imageRepo(list []string, ann map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
		"metadata": map[string]any{"name": "api", "namespace": "flux-system", "resourceVersion": "7"},
		"spec":     map[string]any{"image": "ghcr.io/x/api"},
	}}
	if list != nil {
		l := make([]any, len(list))
		for i, p := range list {
			l[i] = p
		}
		u.Object["spec"].(map[string]any)["exclusionList"] = l
	}
	u.SetAnnotations(ann)
	return u
}

func fakeDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{testReposGVR: "ImageRepositoryList"}, objs...)
}

func readRepo(t *testing.T, dc *dynamicfake.FakeDynamicClient) ([]string, []Exclusion) {
	t.Helper()
	u, err := dc.Resource(testReposGVR).Namespace("flux-system").Get(context.Background(), "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	list, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "exclusionList")
	return list, ParseExclusions(u)
}

func TestExcludeAndUnexcludeTouchOnlyTheirOwn(t *testing.T) {
	ctx := context.Background()
	api := flux.API{Version: "v1"}
	ref := flux.Ref{Namespace: "flux-system", Name: "api"}
	// Flux's default pattern and one an operator added stay whatever
	// autodeploy does.
	dc := fakeDynamic(imageRepo([]string{`^.*\.sig$`, "^sha-manual$"}, nil))
	at := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	added, err := Exclude(ctx, dc, api, ref, Exclusion{Tag: "sha-bad", Service: "api", Reason: "CrashLoopBackOff", At: at})
	if err != nil || !added {
		t.Fatalf("Exclude = %v, %v", added, err)
	}
	list, recs := readRepo(t, dc)
	if !slices.Equal(list, []string{`^.*\.sig$`, "^sha-manual$", "^sha-bad$"}) || len(recs) != 1 || recs[0].Pattern != "^sha-bad$" || recs[0].Service != "api" {
		t.Fatalf("after Exclude: list %q, records %+v", list, recs)
	}
	// A second rollback of the same tag changes nothing; neither does
	// excluding a tag someone else already excluded (it is not ours to
	// remove later).
	for _, tag := range []string{"sha-bad", "sha-manual"} {
		if added, err := Exclude(ctx, dc, api, ref, Exclusion{Tag: tag}); err != nil || added {
			t.Errorf("Exclude(%s) again = %v, %v; want false, nil", tag, added, err)
		}
	}
	if _, recs := readRepo(t, dc); len(recs) != 1 {
		t.Fatalf("records = %+v, want only sha-bad", recs)
	}
	// The operator adds the same pattern by hand too: their copy stays.
	if _, err := dc.Resource(testReposGVR).Namespace("flux-system").Patch(ctx, "api", types.MergePatchType,
		[]byte(`{"spec":{"exclusionList":["^.*\\.sig$","^sha-manual$","^sha-bad$","^sha-bad$"]}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	removed, err := Unexclude(ctx, dc, api, ref, func(Exclusion) bool { return true })
	if err != nil || len(removed) != 1 || removed[0].Tag != "sha-bad" {
		t.Fatalf("Unexclude = %+v, %v", removed, err)
	}
	list, recs = readRepo(t, dc)
	if !slices.Equal(list, []string{`^.*\.sig$`, "^sha-manual$", "^sha-bad$"}) || len(recs) != 0 {
		t.Errorf("after Unexclude: list %q, records %+v; want the operator's patterns only", list, recs)
	}
	u, _ := dc.Resource(testReposGVR).Namespace("flux-system").Get(ctx, "api", metav1.GetOptions{})
	if _, has := u.GetAnnotations()[AnnExclusions]; has {
		t.Errorf("the record annotation is left behind: %v", u.GetAnnotations())
	}
}

// Flux caps exclusionList at 25 (a 26th is refused with 422): a full list
// sheds autodeploy's own oldest pattern for the new one, never someone
// else's; a list full of others' patterns is an error that says so.
func TestExcludeStaysWithinFluxsLimit(t *testing.T) {
	ctx := context.Background()
	api := flux.API{Version: "v1"}
	ref := flux.Ref{Namespace: "flux-system", Name: "api"}
	var list []string
	var recs []Exclusion
	at := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	for i := range MaxExclusionList {
		list = append(list, TagPattern(fmt.Sprintf("sha-%02d", i)))
		if i%5 != 0 { // every fifth is an operator's
			// Recorded newest first: eviction goes by time, not by order.
			recs = append([]Exclusion{{Pattern: list[i], Tag: fmt.Sprintf("sha-%02d", i), Service: "api", At: at.Add(time.Duration(i) * time.Minute)}}, recs...)
		}
	}
	b, _ := json.Marshal(recs)
	dc := fakeDynamic(imageRepo(list, map[string]string{AnnExclusions: string(b)}))
	added, err := Exclude(ctx, dc, api, ref, Exclusion{Tag: "sha-new", Service: "api", At: at.Add(time.Hour)})
	if err != nil || !added {
		t.Fatalf("Exclude into a full list = %v, %v", added, err)
	}
	got, gotRecs := readRepo(t, dc)
	if len(got) != MaxExclusionList || slices.Contains(got, TagPattern("sha-01")) || !slices.Contains(got, TagPattern("sha-00")) || got[len(got)-1] != TagPattern("sha-new") {
		t.Fatalf("list = %q: want sha-01 (autodeploy's oldest) gone, the operator's sha-00 kept, sha-new added", got)
	}
	if len(gotRecs) != len(recs) {
		t.Errorf("records = %d, want %d", len(gotRecs), len(recs))
	}

	var others []string
	for i := range MaxExclusionList {
		others = append(others, TagPattern(fmt.Sprintf("op-%02d", i)))
	}
	dc = fakeDynamic(imageRepo(others, nil))
	if added, err := Exclude(ctx, dc, api, ref, Exclusion{Tag: "sha-new", Service: "api", At: at}); added || err == nil || !strings.Contains(err.Error(), "none of them autodeploy's") {
		t.Errorf("Exclude into a list full of others' = %v, %v", added, err)
	}
	if got, _ := readRepo(t, dc); !slices.Equal(got, others) {
		t.Errorf("others' list changed: %q", got)
	}
}

func TestExcludeRetriesAConflict(t *testing.T) {
	dc := fakeDynamic(imageRepo(nil, nil))
	conflicts := 0
	dc.PrependReactor("patch", "imagerepositories", func(k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts < 2 {
			conflicts++
			return true, nil, apierrors.NewConflict(testReposGVR.GroupResource(), "api", nil)
		}
		return false, nil, nil
	})
	added, err := Exclude(context.Background(), dc, flux.API{Version: "v1"}, flux.Ref{Namespace: "flux-system", Name: "api"}, Exclusion{Tag: "sha-1"})
	if err != nil || !added || conflicts != 2 {
		t.Fatalf("Exclude = %v, %v after %d conflicts", added, err, conflicts)
	}
	if list, _ := readRepo(t, dc); !slices.Equal(list, []string{"^sha-1$"}) {
		t.Errorf("list = %q", list)
	}
}

var testReposGVR = schema.GroupVersionResource{Group: flux.ImageGroup, Version: "v1", Resource: "imagerepositories"}
