package flux

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
)

// Flux GitOps: the other writer of a Deployment in the seed's setup.
// kustomize-controller applies it from git (server-side apply, field
// manager "kustomize-controller", forced), and an ImageUpdateAutomation
// writes each policy's tag back to git through setter markers. autodeploy
// reads these objects to say who writes a service and whether git follows
// the policy (status, doctor); it never suspends them.
const (
	KustomizeGroup = "kustomize.toolkit.fluxcd.io"
	SourceGroup    = "source.toolkit.fluxcd.io"
	// KustomizeManager is the field manager of kustomize-controller's
	// server-side apply: the owner of the image field after Flux applied
	// git (fluxcd.io/flux/components/kustomize/kustomizations/#server-side-apply).
	KustomizeManager = "kustomize-controller"
	// Labels kustomize-controller puts on every object it applies.
	KustomizationNameLabel      = KustomizeGroup + "/name"
	KustomizationNamespaceLabel = KustomizeGroup + "/namespace"
	// ReconcileAnnotation set to ReconcileDisabled on an object in the
	// cluster makes kustomize-controller skip that object, and only it
	// (fluxcd.io/flux/components/kustomize/kustomizations/#controlling-the-apply-behavior-of-resources).
	KustomizeReconcileAnnotation = KustomizeGroup + "/reconcile"
	ReconcileDisabled            = "disabled"
)

// KustomizationGVR and GitRepositoryGVR are served as v1 by every Flux
// generation autodeploy supports (2.6 and later).
var (
	KustomizationGVR = schema.GroupVersionResource{Group: KustomizeGroup, Version: "v1", Resource: "kustomizations"}
	GitRepositoryGVR = schema.GroupVersionResource{Group: SourceGroup, Version: "v1", Resource: "gitrepositories"}
)

// Automations is the ImageUpdateAutomation resource. It shares the image
// group with the policies, and each Flux generation serves it at the same
// preferred version (2.6: v1beta2, 2.7: v1).
func (a API) Automations() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: ImageGroup, Version: a.Version, Resource: "imageupdateautomations"}
}

// Kustomization is what autodeploy needs of a Flux Kustomization.
type Kustomization struct {
	Ref
	Suspended   bool
	Ready       bool
	Message     string
	LastApplied string // status.lastAppliedRevision, e.g. main@sha1:0a1b...
	Source      Ref    // spec.sourceRef (a GitRepository in the seed)
	SourceKind  string
	Path        string // spec.path
}

// ParseKustomization reads a Kustomization.
func ParseKustomization(u *unstructured.Unstructured) Kustomization {
	k := Kustomization{Ref: Ref{Namespace: u.GetNamespace(), Name: u.GetName()}}
	k.Suspended = isSuspended(u)
	k.Ready, k.Message = readyCondition(u)
	k.LastApplied, _, _ = unstructured.NestedString(u.Object, "status", "lastAppliedRevision")
	k.SourceKind, k.Source = sourceRef(u)
	k.Path, _, _ = unstructured.NestedString(u.Object, "spec", "path")
	return k
}

// Automation is what autodeploy needs of an ImageUpdateAutomation.
type Automation struct {
	Ref
	Suspended      bool
	Ready          bool
	Message        string
	Source         Ref
	SourceKind     string
	LastPushCommit string
	LastPushTime   *time.Time
	// ObservedPolicies is the tag of each ImagePolicy the automation's last
	// successful run wrote (status.observedPolicies, Flux >= 2.3), as
	// tag@digest when the policy pins digests (ObservedRef); nil when it
	// does not say.
	ObservedPolicies map[string]string
	// UpdatePath is spec.update.path; CheckoutBranch and PushBranch are
	// spec.git.checkout.ref.branch and spec.git.push.branch ("" when
	// unset: the GitRepository's branch, then the checkout branch).
	UpdatePath, CheckoutBranch, PushBranch string
	// PolicySelector is spec.policySelector: the automation applies only
	// the ImagePolicies of its namespace whose labels it matches
	// (fluxcd.io/flux/components/image/imageupdateautomations/#policy-selector);
	// nil selects every one, as an absent or empty selector does. One the
	// API server let through but that does not parse selects nothing, and
	// SelectorError says why.
	PolicySelector labels.Selector
	SelectorError  string
}

// ParseAutomation reads an ImageUpdateAutomation of any served version.
func ParseAutomation(u *unstructured.Unstructured) Automation {
	a := Automation{Ref: Ref{Namespace: u.GetNamespace(), Name: u.GetName()}}
	a.Suspended = isSuspended(u)
	a.Ready, a.Message = readyCondition(u)
	a.SourceKind, a.Source = sourceRef(u)
	a.LastPushCommit, _, _ = unstructured.NestedString(u.Object, "status", "lastPushCommit")
	a.UpdatePath, _, _ = unstructured.NestedString(u.Object, "spec", "update", "path")
	a.CheckoutBranch, _, _ = unstructured.NestedString(u.Object, "spec", "git", "checkout", "ref", "branch")
	a.PushBranch, _, _ = unstructured.NestedString(u.Object, "spec", "git", "push", "branch")
	if m, found, _ := unstructured.NestedMap(u.Object, "spec", "policySelector"); found {
		var ls metav1.LabelSelector
		err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &ls)
		if err == nil {
			a.PolicySelector, err = metav1.LabelSelectorAsSelector(&ls)
		}
		if err != nil {
			a.PolicySelector, a.SelectorError = labels.Nothing(), err.Error()
		}
	}
	if s, _, _ := unstructured.NestedString(u.Object, "status", "lastPushTime"); s != "" {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			a.LastPushTime = &t
		}
	}
	if obs, found, _ := unstructured.NestedMap(u.Object, "status", "observedPolicies"); found {
		a.ObservedPolicies = map[string]string{}
		for name, v := range obs {
			if m, ok := v.(map[string]any); ok {
				tag, _ := m["tag"].(string)
				digest, _ := m["digest"].(string)
				a.ObservedPolicies[name] = ObservedRef(tag, digest)
			}
		}
	}
	return a
}

// ObservedRef is how ObservedPolicies spells what an automation wrote: the
// tag, with @digest when there is one. A digest-pinned policy keeps its tag
// (main) while the digest moves: compared by tag alone, the automation's
// last run would count as having written every new build (issue 17, item
// 6: the wait ended at once).
func ObservedRef(tag, digest string) string {
	if digest == "" {
		return tag
	}
	return tag + "@" + digest
}

// ErrNoAutomation: no ImageUpdateAutomation writes the policy's tag to the
// source (none exists, or the one that does is suspended).
var ErrNoAutomation = errors.New("no ImageUpdateAutomation writes the policy's tag to git")

// AwaitAutomation waits until an ImageUpdateAutomation of namespace ns
// that pushes to source has written tag for ImagePolicy policy (its last
// successful run observed that tag, an ObservedRef), or ctx ends. It returns at once with
// ErrNoAutomation when none can, and with a nil error, without waiting,
// when the automation does not report what it observed (Flux < 2.3).
func AwaitAutomation(ctx context.Context, dc dynamic.Interface, api API, ns string, source Ref, policy, tag string) error {
	res := dc.Resource(api.Automations()).Namespace(ns)
	list, err := res.List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list ImageUpdateAutomations in %s: %w", ns, err)
	}
	// done reports whether a says tag is in git; ok is false when a cannot
	// carry it there.
	done := func(a Automation) (bool, bool) {
		if a.Source != source || a.Suspended {
			return false, false
		}
		return a.ObservedPolicies == nil || a.Ready && a.ObservedPolicies[policy] == tag, true
	}
	candidates := 0
	for i := range list.Items {
		finished, ok := done(ParseAutomation(&list.Items[i]))
		if finished {
			return nil
		}
		if ok {
			candidates++
		}
	}
	if candidates == 0 {
		return ErrNoAutomation
	}
	w, err := res.Watch(ctx, metav1.ListOptions{ResourceVersion: list.GetResourceVersion()})
	if err != nil {
		return fmt.Errorf("watch ImageUpdateAutomations in %s: %w", ns, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the ImageUpdateAutomation did not write %s to git (%w)", tag, context.Cause(ctx))
		case ev, open := <-w.ResultChan():
			if !open {
				return fmt.Errorf("the watch of ImageUpdateAutomations in %s ended", ns)
			}
			if u, ok := ev.Object.(*unstructured.Unstructured); ok && ev.Type == watch.Modified {
				if finished, _ := done(ParseAutomation(u)); finished {
					return nil
				}
			}
		}
	}
}

func sourceRef(u *unstructured.Unstructured) (string, Ref) {
	kind, _, _ := unstructured.NestedString(u.Object, "spec", "sourceRef", "kind")
	r := Ref{Namespace: u.GetNamespace()}
	r.Name, _, _ = unstructured.NestedString(u.Object, "spec", "sourceRef", "name")
	if ns, _, _ := unstructured.NestedString(u.Object, "spec", "sourceRef", "namespace"); ns != "" {
		r.Namespace = ns
	}
	return kind, r
}

// GitOps says who writes a Deployment from git and whether git follows
// its ImagePolicy.
type GitOps struct {
	// Kustomization applies the Deployment (its labels name it).
	Kustomization Ref
	// Found is false when the labels name a Kustomization that does not
	// exist (deleted, or a copy of another cluster's labels).
	Found bool
	K     Kustomization
	// Automation writes the policy's tag into the Kustomization's source;
	// nil when none does.
	Automation *Automation
	// Elsewhere lists automations of that source whose commits do not
	// reach what the Kustomization applies, and why.
	Elsewhere []string
}

// Problem says why git will not follow the policy, with the fix; "" when it
// will (as far as the objects tell).
func (g GitOps) Problem(policy string) string {
	switch {
	case !g.Found:
		return fmt.Sprintf("the Deployment's labels name Flux Kustomization %s, which does not exist", g.Kustomization)
	case g.Automation == nil && len(g.Elsewhere) > 0:
		return fmt.Sprintf("applied from git by Kustomization %s, but no ImageUpdateAutomation writes ImagePolicy %s's tag where it applies from (%s): every deploy will be reverted by Flux until those commits are merged",
			g.Kustomization, policy, strings.Join(g.Elsewhere, "; "))
	case g.Automation == nil:
		return fmt.Sprintf("applied from git by Kustomization %s, but no ImageUpdateAutomation writes ImagePolicy %s's tag to %s %s: every deploy will be reverted by Flux; create one (flux create image update) and add the setter marker # {\"$imagepolicy\": \"%s\"} to the image line in git",
			g.Kustomization, policy, g.K.SourceKind, g.K.Source, markerName(policy))
	case g.Automation.Suspended:
		return fmt.Sprintf("ImageUpdateAutomation %s is suspended: git does not follow ImagePolicy %s, and Flux will revert deploys (flux resume image update %s -n %s)",
			g.Automation.Ref, policy, g.Automation.Name, g.Automation.Namespace)
	case !g.Automation.Ready:
		return fmt.Sprintf("ImageUpdateAutomation %s is not Ready: %s (flux get image update %s -n %s)", g.Automation.Ref, g.Automation.Message, g.Automation.Name, g.Automation.Namespace)
	}
	return ""
}

// markerName is the policy as a setter marker names it, namespace:name.
func markerName(policy string) string {
	for i := range len(policy) {
		if policy[i] == '/' {
			return policy[:i] + ":" + policy[i+1:]
		}
	}
	return policy
}

// ResolveGitOps says who writes a Deployment applied by Kustomization k
// from git, given the Kustomization as read (nil: not found) and the
// ImageUpdateAutomations of the namespace of policy, the ImagePolicy git's
// setter marker names: those that push to the Kustomization's source and
// select the policy can carry its tag into git (an automation applies the
// policies of its own namespace that its policySelector matches).
// policyLabels are the policy's labels (PolicyLabels); nil when they are
// not known, and then no selector is judged. It is pure, for status and
// doctor.
func ResolveGitOps(k Ref, kustomization *unstructured.Unstructured, automations []unstructured.Unstructured, policy Ref, policyLabels labels.Set) GitOps {
	g := GitOps{Kustomization: k}
	if kustomization == nil {
		return g
	}
	g.Found, g.K = true, ParseKustomization(kustomization)
	for i := range automations {
		a := ParseAutomation(&automations[i])
		if a.Source != g.K.Source {
			continue
		}
		why := a.elsewhere(g.K)
		if why == "" && policyLabels != nil {
			why = a.leavesOut(policy, policyLabels)
		}
		if why != "" {
			// It commits, but not where this Kustomization applies from,
			// or not this policy.
			g.Elsewhere = append(g.Elsewhere, fmt.Sprintf("ImageUpdateAutomation %s %s", a.Ref, why))
			continue
		}
		// Prefer one that works: a suspended or failing one is reported
		// only when no other writes the tag.
		if g.Automation == nil || (!g.Automation.Ready || g.Automation.Suspended) && a.Ready && !a.Suspended {
			g.Automation = &a
		}
	}
	return g
}

// elsewhere says why a's commits do not reach what Kustomization k
// applies, "" when they do (as far as the objects tell): it pushes to
// another branch than it checks out (a pull-request flow), or it updates
// files outside k's path (fluxcd.io/flux/components/image/imageupdateautomations/#update).
func (a Automation) elsewhere(k Kustomization) string {
	// Without a checkout branch the GitRepository's is used, which is not
	// read here: only a push branch that differs from a named checkout
	// branch is known to go elsewhere.
	if a.PushBranch != "" && a.CheckoutBranch != "" && a.PushBranch != a.CheckoutBranch {
		return fmt.Sprintf("pushes to branch %s, not to the branch Flux applies from", a.PushBranch)
	}
	up, kp := cleanPath(a.UpdatePath), cleanPath(k.Path)
	if up != "" && kp != up && !strings.HasPrefix(kp, up+"/") && !strings.HasPrefix(up, kp+"/") {
		return fmt.Sprintf("updates %s, outside the Kustomization's path %s", a.UpdatePath, k.Path)
	}
	return ""
}

// leavesOut says why a's spec.policySelector does not select the policy
// with these labels, "" when it does.
func (a Automation) leavesOut(policy Ref, policyLabels labels.Set) string {
	switch {
	case a.SelectorError != "":
		return "has an invalid spec.policySelector (" + a.SelectorError + "), which selects no ImagePolicy"
	case a.PolicySelector == nil || a.PolicySelector.Matches(policyLabels):
		return ""
	}
	have := "no labels"
	if len(policyLabels) > 0 {
		have = "labels " + policyLabels.String()
	}
	return fmt.Sprintf("spec.policySelector %s does not select ImagePolicy %s (%s)", a.PolicySelector, policy, have)
}

// PolicyLabels are an ImagePolicy's labels for ResolveGitOps: nil for no
// policy (unknown), empty for one without labels.
func PolicyLabels(u *unstructured.Unstructured) labels.Set {
	if u == nil {
		return nil
	}
	l := labels.Set(u.GetLabels())
	if l == nil {
		l = labels.Set{}
	}
	return l
}

// cleanPath is a repository path without ./ and trailing slashes; "" is
// the root.
func cleanPath(p string) string {
	p = path.Clean("/" + p)
	return strings.TrimPrefix(p, "/")
}
