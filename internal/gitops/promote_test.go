package gitops

import (
	"context"
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
)

var testPoliciesGVR = schema.GroupVersionResource{Group: flux.ImageGroup, Version: "v1", Resource: "imagepolicies"}

var (
	rootRef  = flux.Ref{Namespace: "flux-system", Name: "api"}
	ownedRef = flux.Ref{Namespace: "flux-system", Name: "autodeploy-production"}
)

// policy is an ImagePolicy over ImageRepository api; spec entries are
// added to the seed's alphabetical sha-<hex> spec.
func policy(ref flux.Ref, labels, ann map[string]string, spec map[string]any) *unstructured.Unstructured {
	s := map[string]any{
		"imageRepositoryRef": map[string]any{"name": "api"},
		"filterTags":         map[string]any{"pattern": "^sha-[a-f0-9]+$"},
		"policy":             map[string]any{"alphabetical": map[string]any{"order": "asc"}},
	}
	for k, v := range spec {
		s[k] = v
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy",
		"metadata": map[string]any{"name": ref.Name, "namespace": ref.Namespace, "resourceVersion": "3"},
		"spec":     s,
	}}
	u.SetLabels(labels)
	u.SetAnnotations(ann)
	return u
}

func ours(service string) (map[string]string, map[string]string) {
	return map[string]string{LabelManagedBy: ManagedByAutodeploy}, map[string]string{AnnPromotionOf: service}
}

func fakePolicies(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{testPoliciesGVR: "ImagePolicyList"}, objs...)
}

func TestPointPolicy(t *testing.T) {
	l, a := ours("production")
	_, other := ours("canary")
	root := policy(rootRef, nil, nil, nil)
	digestRoot := policy(rootRef, nil, nil, map[string]any{"digestReflectionPolicy": "Always", "interval": "10m"})
	for _, tt := range []struct {
		name     string
		objs     []runtime.Object
		img      string
		reactor  func(*int) k8stesting.ReactionFunc // on patch and create
		want     Pointed
		wantErr  string // substring; "" none
		foreign  bool
		pattern  string // the owned policy's filterTags.pattern after
		digest   string // its digestReflectionPolicy after
		attempts int    // patch or create requests seen, with the reactor
	}{
		{name: "absent: created with the record", objs: []runtime.Object{root}, img: "ghcr.io/x/api:sha-2222222",
			want: Pointed{Created: true, Changed: true}, pattern: `^sha-2222222$`},
		{name: "ours at another tag: patched", objs: []runtime.Object{root, policy(ownedRef, l, a, map[string]any{"filterTags": map[string]any{"pattern": "^sha-1111111$"}})},
			img: "ghcr.io/x/api:sha-2222222", want: Pointed{Changed: true}, pattern: `^sha-2222222$`},
		{name: "ours at the tag: only the reconcile request", objs: []runtime.Object{root, policy(ownedRef, l, a, map[string]any{"filterTags": map[string]any{"pattern": "^sha-2222222$"}})},
			img: "ghcr.io/x/api:sha-2222222", want: Pointed{}, pattern: `^sha-2222222$`},
		{name: "a tag with regexp characters is quoted", objs: []runtime.Object{root}, img: "ghcr.io/x/api:v1.2.3",
			want: Pointed{Created: true, Changed: true}, pattern: `^v1\.2\.3$`},
		{name: "the root's digestReflectionPolicy is copied: git gets tag@digest as the source runs it", objs: []runtime.Object{digestRoot},
			img: "ghcr.io/x/api:main@sha256:" + strings.Repeat("a", 64), want: Pointed{Created: true, Changed: true}, pattern: `^main$`, digest: "Always"},
		{name: "someone else's policy at that name: never written", objs: []runtime.Object{root, policy(ownedRef, nil, nil, nil)},
			img: "ghcr.io/x/api:sha-2222222", wantErr: "is not autodeploy's", foreign: true, pattern: "^sha-[a-f0-9]+$"},
		{name: "another service's owned policy: never written", objs: []runtime.Object{root, policy(ownedRef, l, other, map[string]any{"filterTags": map[string]any{"pattern": "^sha-1111111$"}})},
			img: "ghcr.io/x/api:sha-2222222", wantErr: "promote.imagePolicy of production", foreign: true, pattern: "^sha-1111111$"},
		{name: "a conflict is read again and retried", objs: []runtime.Object{root, policy(ownedRef, l, a, nil)}, img: "ghcr.io/x/api:sha-2222222",
			reactor: func(n *int) k8stesting.ReactionFunc {
				return func(k8stesting.Action) (bool, runtime.Object, error) {
					if *n++; *n == 1 {
						return true, nil, apierrors.NewConflict(testPoliciesGVR.GroupResource(), ownedRef.Name, nil)
					}
					return false, nil, nil
				}
			}, want: Pointed{Changed: true}, pattern: `^sha-2222222$`, attempts: 2},
		{name: "RBAC refuses the create: named", objs: []runtime.Object{root}, img: "ghcr.io/x/api:sha-2222222",
			reactor: func(n *int) k8stesting.ReactionFunc {
				return func(k8stesting.Action) (bool, runtime.Object, error) {
					*n++
					return true, nil, apierrors.NewForbidden(testPoliciesGVR.GroupResource(), ownedRef.Name, errors.New("RBAC"))
				}
			}, wantErr: "create ImagePolicy flux-system/autodeploy-production for the promotion of production", attempts: 1},
		{name: "a digest alone has no tag to select", objs: []runtime.Object{root}, img: "ghcr.io/x/api@sha256:" + strings.Repeat("b", 64), wantErr: "has no tag"},
		{name: "the root policy is missing: named", img: "ghcr.io/x/api:sha-2222222", wantErr: "read ImagePolicy flux-system/api (the root of production's promotion)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dc := fakePolicies(tt.objs...)
			n := 0
			if tt.reactor != nil {
				dc.PrependReactor("patch", "imagepolicies", tt.reactor(&n))
				dc.PrependReactor("create", "imagepolicies", tt.reactor(&n))
			}
			got, err := PointPolicy(context.Background(), dc, flux.API{Version: "v1"}, ownedRef, rootRef, "production", tt.img, "token-1")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("PointPolicy: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("PointPolicy error %v, want %q", err, tt.wantErr)
			case errors.Is(err, ErrForeignPolicy) != tt.foreign:
				t.Errorf("foreign = %v, want %v (%v)", errors.Is(err, ErrForeignPolicy), tt.foreign, err)
			}
			if got != tt.want {
				t.Errorf("Pointed = %+v, want %+v", got, tt.want)
			}
			if n != tt.attempts {
				t.Errorf("%d writes, want %d", n, tt.attempts)
			}
			u, err := dc.Resource(testPoliciesGVR).Namespace(ownedRef.Namespace).Get(context.Background(), ownedRef.Name, metav1.GetOptions{})
			if tt.pattern == "" {
				if !apierrors.IsNotFound(err) {
					t.Errorf("owned policy: %v, want none", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p, _, _ := unstructured.NestedString(u.Object, "spec", "filterTags", "pattern"); p != tt.pattern {
				t.Errorf("pattern %q, want %q", p, tt.pattern)
			}
			if d, _, _ := unstructured.NestedString(u.Object, "spec", "digestReflectionPolicy"); d != tt.digest {
				t.Errorf("digestReflectionPolicy %q, want %q", d, tt.digest)
			}
			if tt.foreign {
				if _, asked := u.GetAnnotations()[flux.ReconcileAnnotation]; asked {
					t.Error("someone else's policy got a reconcile request")
				}
				return
			}
			if !OwnedBy(u, "production") {
				t.Errorf("record missing: labels %v annotations %v", u.GetLabels(), u.GetAnnotations())
			}
			if tok := u.GetAnnotations()[flux.ReconcileAnnotation]; tok != "token-1" {
				t.Errorf("reconcile request %q, want token-1", tok)
			}
			if r, _, _ := unstructured.NestedString(u.Object, "spec", "imageRepositoryRef", "name"); r != "api" {
				t.Errorf("imageRepositoryRef %q, want the root policy's api", r)
			}
			if o, _, _ := unstructured.NestedString(u.Object, "spec", "policy", "alphabetical", "order"); o != "asc" {
				t.Errorf("order %q", o)
			}
		})
	}
}

// The owned policy lives in another namespace than the root's
// ImageRepository: the reference names its namespace.
func TestOwnedSpecNamesAnotherNamespace(t *testing.T) {
	spec, err := OwnedSpec(policy(rootRef, nil, nil, nil), flux.Ref{Namespace: "apps", Name: "p"}, "sha-1")
	if err != nil {
		t.Fatal(err)
	}
	if ref := spec["imageRepositoryRef"].(map[string]any); ref["namespace"] != "flux-system" || ref["name"] != "api" {
		t.Errorf("imageRepositoryRef %v", ref)
	}
}

func TestDeletePolicyByItsRecord(t *testing.T) {
	l, a := ours("production")
	for _, tt := range []struct {
		name        string
		obj         runtime.Object
		dryRun      bool
		wantDeleted bool
		wantErr     bool
		left        bool // the policy is still there
	}{
		{name: "ours: deleted", obj: policy(ownedRef, l, a, nil), wantDeleted: true},
		{name: "ours, dry run: said, kept", obj: policy(ownedRef, l, a, nil), dryRun: true, wantDeleted: true, left: true},
		{name: "someone else's: left", obj: policy(ownedRef, nil, nil, nil), wantErr: true, left: true},
		{name: "none", wantDeleted: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var objs []runtime.Object
			if tt.obj != nil {
				objs = append(objs, tt.obj)
			}
			dc := fakePolicies(objs...)
			deleted, err := DeletePolicy(context.Background(), dc, flux.API{Version: "v1"}, ownedRef, "production", tt.dryRun)
			if deleted != tt.wantDeleted || (err != nil) != tt.wantErr {
				t.Fatalf("DeletePolicy = %v, %v", deleted, err)
			}
			_, err = dc.Resource(testPoliciesGVR).Namespace(ownedRef.Namespace).Get(context.Background(), ownedRef.Name, metav1.GetOptions{})
			if left := err == nil; left != tt.left {
				t.Errorf("left = %v, want %v", left, tt.left)
			}
		})
	}
}

// The owned policy is a lever status lists with the command that takes it
// away; someone else's policy of that name, or none, is not autodeploy's.
func TestPromotionLever(t *testing.T) {
	owned := flux.Ref{Namespace: "flux-system", Name: "autodeploy-production"}
	policy := func(labels map[string]string, service string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"filterTags": map[string]any{"pattern": "^sha-2222222$"}}}}
		u.SetLabels(labels)
		u.SetAnnotations(map[string]string{AnnPromotionOf: service})
		return u
	}
	for _, tt := range []struct {
		name string
		u    *unstructured.Unstructured
		want bool
	}{
		{"autodeploy's", policy(OwnedLabels(), "production"), true},
		{"another service's", policy(OwnedLabels(), "staging"), false},
		{"someone else's", policy(nil, "production"), false},
		{"none", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, ok := PromotionLever("production", owned, tt.u)
			if ok != tt.want {
				t.Fatalf("lever %+v, %v; want %v", l, ok, tt.want)
			}
			if ok && (l.Kind != LeverPromotion || l.Object != "ImagePolicy flux-system/autodeploy-production" || !l.Ours ||
				!strings.HasPrefix(l.Clear, "autodeploy forget production") || !strings.Contains(l.Detail, "^sha-2222222$")) {
				t.Errorf("lever %+v", l)
			}
		})
	}
}
