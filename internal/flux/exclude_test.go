package flux

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestOrderPrefers(t *testing.T) {
	tests := []struct {
		name   string
		order  Order
		a, b   string
		want   bool
		wantOK bool
	}{
		{"alphabetical asc", Order{Kind: "alphabetical"}, "sha-b", "sha-a", true, true},
		{"alphabetical asc, lower", Order{Kind: "alphabetical"}, "sha-a", "sha-b", false, true},
		{"alphabetical desc", Order{Kind: "alphabetical", Descending: true}, "sha-a", "sha-b", true, true},
		{"numerical with extract", Order{Kind: "numerical", Pattern: `^main-[a-f0-9]+-(?P<ts>[0-9]+)$`, Extract: "$ts"}, "main-aa-20", "main-bb-3", true, true},
		{"numerical, not a number", Order{Kind: "numerical"}, "x", "3", false, false},
		{"semver", Order{Kind: "semver", Range: ">=1.0.0"}, "v1.10.0", "1.9.3", true, true},
		{"semver, older", Order{Kind: "semver"}, "1.2.0", "1.10.0", false, true},
		// Tags image-reflector-controller accepts (Masterminds/semver):
		// issue 17, item 8.
		{"semver, two parts", Order{Kind: "semver"}, "1.10", "1.2", true, true},
		{"semver, major only with v", Order{Kind: "semver"}, "v3", "v2.9.1", true, true},
		{"selected tag filtered out", Order{Kind: "alphabetical", Pattern: `^sha-`}, "latest", "sha-a", false, false},
		// The policy's filter drops the excluded tag: it can never be
		// selected, so its exclusion changes nothing.
		{"excluded tag filtered out", Order{Kind: "alphabetical", Pattern: `^sha-`}, "sha-a", "fail-b", true, true},
		{"unknown policy", Order{}, "a", "b", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.order.Prefers(tt.a, tt.b)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Prefers(%q, %q) = %v, %v; want %v, %v", tt.a, tt.b, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestParseOrder(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"filterTags": map[string]any{"pattern": "^sha-(?P<h>.*)$", "extract": "$h"},
		"policy":     map[string]any{"alphabetical": map[string]any{"order": "desc"}},
	}}}
	want := Order{Kind: "alphabetical", Descending: true, Pattern: "^sha-(?P<h>.*)$", Extract: "$h"}
	if got := ParseOrder(u); got != want {
		t.Errorf("ParseOrder = %+v, want %+v", got, want)
	}
}

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
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{reposGVR: "ImageRepositoryList"}, objs...)
}

func readRepo(t *testing.T, dc *dynamicfake.FakeDynamicClient) ([]string, []Exclusion) {
	t.Helper()
	u, err := dc.Resource(reposGVR).Namespace("flux-system").Get(context.Background(), "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	list, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "exclusionList")
	return list, ParseExclusions(u)
}

func TestExcludeAndUnexcludeTouchOnlyTheirOwn(t *testing.T) {
	ctx := context.Background()
	api := API{Version: "v1"}
	ref := Ref{Namespace: "flux-system", Name: "api"}
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
	if _, err := dc.Resource(reposGVR).Namespace("flux-system").Patch(ctx, "api", types.MergePatchType,
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
	u, _ := dc.Resource(reposGVR).Namespace("flux-system").Get(ctx, "api", metav1.GetOptions{})
	if _, has := u.GetAnnotations()[AnnExclusions]; has {
		t.Errorf("the record annotation is left behind: %v", u.GetAnnotations())
	}
}

// Flux caps exclusionList at 25 (a 26th is refused with 422): a full list
// sheds autodeploy's own oldest pattern for the new one, never someone
// else's; a list full of others' patterns is an error that says so.
func TestExcludeStaysWithinFluxsLimit(t *testing.T) {
	ctx := context.Background()
	api := API{Version: "v1"}
	ref := Ref{Namespace: "flux-system", Name: "api"}
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
			return true, nil, apierrors.NewConflict(reposGVR.GroupResource(), "api", nil)
		}
		return false, nil, nil
	})
	added, err := Exclude(context.Background(), dc, API{Version: "v1"}, Ref{Namespace: "flux-system", Name: "api"}, Exclusion{Tag: "sha-1"})
	if err != nil || !added || conflicts != 2 {
		t.Fatalf("Exclude = %v, %v after %d conflicts", added, err, conflicts)
	}
	if list, _ := readRepo(t, dc); !slices.Equal(list, []string{"^sha-1$"}) {
		t.Errorf("list = %q", list)
	}
}

// An automation counts as writing a service's tag only where its commits
// reach what the Kustomization applies.
func TestResolveGitOpsWhereTheAutomationWrites(t *testing.T) {
	k := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "apps", "namespace": "flux-system"},
		"spec":     map[string]any{"path": "./apps/production", "sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
	}}
	auto := func(path, checkout, push string) unstructured.Unstructured {
		git := map[string]any{}
		if checkout != "" {
			git["checkout"] = map[string]any{"ref": map[string]any{"branch": checkout}}
		}
		if push != "" {
			git["push"] = map[string]any{"branch": push}
		}
		return unstructured.Unstructured{Object: map[string]any{
			"metadata": map[string]any{"name": "flux-system", "namespace": "flux-system"},
			"spec":     map[string]any{"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}, "git": git, "update": map[string]any{"path": path}},
		}}
	}
	for _, tt := range []struct {
		name    string
		a       unstructured.Unstructured
		writes  bool
		problem string
	}{
		{"the whole repository", auto("./", "main", "main"), true, ""},
		{"a parent of the path", auto("./apps", "main", ""), true, ""},
		{"push branch unknown to compare", auto("./apps", "", "main"), true, ""},
		{"another directory", auto("./clusters/staging", "main", "main"), false, "updates ./clusters/staging, outside the Kustomization's path ./apps/production"},
		{"a pull-request branch", auto("./apps", "main", "image-updates"), false, "pushes to branch image-updates, not to the branch Flux applies from"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := ResolveGitOps(Ref{Namespace: "flux-system", Name: "apps"}, k, []unstructured.Unstructured{tt.a})
			p := g.Problem("flux-system/api")
			if (g.Automation != nil) != tt.writes || !tt.writes && !strings.Contains(p, tt.problem) {
				t.Errorf("automation %v, problem %q; want writes=%v and %q", g.Automation, p, tt.writes, tt.problem)
			}
		})
	}
}
