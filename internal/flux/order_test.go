package flux

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
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
			g := ResolveGitOps(Ref{Namespace: "flux-system", Name: "apps"}, k, []unstructured.Unstructured{tt.a}, Ref{Namespace: "flux-system", Name: "api"}, nil)
			p := g.Problem("flux-system/api")
			if (g.Automation != nil) != tt.writes || !tt.writes && !strings.Contains(p, tt.problem) {
				t.Errorf("automation %v, problem %q; want writes=%v and %q", g.Automation, p, tt.writes, tt.problem)
			}
		})
	}
}

// An automation applies only the ImagePolicies its spec.policySelector
// matches (fluxcd.io/flux/components/image/imageupdateautomations/#policy-selector):
// one whose selector leaves the service's policy out does not carry its
// tag into git, and Flux then reverts every deploy.
func TestResolveGitOpsPolicySelector(t *testing.T) {
	k := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "apps", "namespace": "flux-system"},
		"spec":     map[string]any{"path": "./apps", "sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
	}}
	auto := func(selector map[string]any) unstructured.Unstructured {
		spec := map[string]any{"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}, "update": map[string]any{"path": "./apps"}}
		if selector != nil {
			spec["policySelector"] = selector
		}
		return unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "flux-system", "namespace": "flux-system"}, "spec": spec,
			"status": map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "True"}}}}}
	}
	env := func(v string) map[string]any { return map[string]any{"matchLabels": map[string]any{"env": v}} }
	for _, tt := range []struct {
		name     string
		selector map[string]any
		labels   labels.Set
		writes   bool
		problem  string
	}{
		{"no selector", nil, labels.Set{}, true, ""},
		{"empty selector: every policy", map[string]any{}, labels.Set{}, true, ""},
		{"matching labels", env("production"), labels.Set{"env": "production"}, true, ""},
		{"policy's labels unknown: not judged", env("production"), nil, true, ""},
		{"other labels", env("staging"), labels.Set{"env": "production"}, false, "spec.policySelector env=staging does not select ImagePolicy flux-system/api (labels env=production)"},
		{"no labels", env("staging"), labels.Set{}, false, "spec.policySelector env=staging does not select ImagePolicy flux-system/api (no labels)"},
		{"expression", map[string]any{"matchExpressions": []any{map[string]any{"key": "app.kubernetes.io/managed-by", "operator": "NotIn", "values": []any{"autodeploy"}}}},
			labels.Set{"app.kubernetes.io/managed-by": "autodeploy"}, false, "spec.policySelector app.kubernetes.io/managed-by notin (autodeploy) does not select"},
		{"invalid selector selects nothing", map[string]any{"matchExpressions": []any{map[string]any{"key": "env", "operator": "Sideways"}}},
			labels.Set{"env": "production"}, false, "has an invalid spec.policySelector"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := ResolveGitOps(Ref{Namespace: "flux-system", Name: "apps"}, k, []unstructured.Unstructured{auto(tt.selector)}, Ref{Namespace: "flux-system", Name: "api"}, tt.labels)
			p := g.Problem("flux-system/api")
			if (g.Automation != nil) != tt.writes || !tt.writes && !strings.Contains(p, tt.problem) || tt.writes && p != "" {
				t.Errorf("automation %v, problem %q; want writes=%v and %q", g.Automation, p, tt.writes, tt.problem)
			}
		})
	}
}
