package flux

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// NotificationGroup is the API group of notification-controller, whose
// Receiver turns a registry's webhook into the reconcile request a rescan
// needs (the annotation ReconcileAnnotation, on each listed resource).
const NotificationGroup = "notification.toolkit.fluxcd.io"

// ReceiverGVR is the Receiver at v1, served since Flux 2.0 (every Flux
// autodeploy supports, 2.6 and later: testdata/crds).
var ReceiverGVR = schema.GroupVersionResource{Group: NotificationGroup, Version: "v1", Resource: "receivers"}

// Receiver is what autodeploy needs from a Flux Receiver.
type Receiver struct {
	Namespace, Name string
	// Ready is the Ready condition of the current generation, false while
	// the Receiver is suspended: notification-controller's webhook handler
	// skips a suspended or not-Ready Receiver.
	Ready   bool
	Message string
	// WebhookPath is status.webhookPath, the path (/hook/<sha256>) the
	// webhook-receiver Service answers for this Receiver.
	WebhookPath string
	Resources   []ReceiverResource
}

// Key is namespace/name.
func (r Receiver) Key() string { return r.Namespace + "/" + r.Name }

// ReceiverResource is one of spec.resources, its namespace defaulted to
// the Receiver's as notification-controller does.
type ReceiverResource struct {
	Kind, Name, Namespace string
	// MatchLabels selects among the kind's objects of Namespace when Name
	// is "*"; nil when the Receiver has none (then "*" selects nothing).
	MatchLabels map[string]string
}

// ParseReceiver reads a Receiver.
func ParseReceiver(u *unstructured.Unstructured) Receiver {
	r := Receiver{Namespace: u.GetNamespace(), Name: u.GetName()}
	r.Ready, r.Message = readyCondition(u)
	if suspended, _, _ := unstructured.NestedBool(u.Object, "spec", "suspend"); suspended {
		r.Ready, r.Message = false, "suspended"
	}
	r.WebhookPath, _, _ = unstructured.NestedString(u.Object, "status", "webhookPath")
	items, _, _ := unstructured.NestedSlice(u.Object, "spec", "resources")
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			continue
		}
		res := ReceiverResource{Namespace: r.Namespace}
		res.Kind, _ = m["kind"].(string)
		res.Name, _ = m["name"].(string)
		if ns, _ := m["namespace"].(string); ns != "" {
			res.Namespace = ns
		}
		if ml, ok := m["matchLabels"].(map[string]any); ok {
			res.MatchLabels = map[string]string{}
			for k, v := range ml {
				res.MatchLabels[k], _ = v.(string)
			}
		}
		r.Resources = append(r.Resources, res)
	}
	return r
}

// lists says whether res names the ImageRepository repo, whose labels
// returns (called only for a wildcard).
func (res ReceiverResource) lists(repo Ref, repoLabels func(Ref) map[string]string) bool {
	if res.Kind != "ImageRepository" || res.Namespace != repo.Namespace {
		return false
	}
	if res.Name != "*" {
		return res.Name == repo.Name
	}
	// notification-controller refuses "*" without matchLabels ("matchLabels
	// field not set when using wildcard '*' as name"): it annotates
	// nothing. An empty matchLabels selects every object of the namespace.
	if res.MatchLabels == nil {
		return false
	}
	return labels.SelectorFromSet(res.MatchLabels).Matches(labels.Set(repoLabels(repo)))
}

// Coverage says which Receiver answers for each ImageRepository.
type Coverage struct {
	// Installed is false when the cluster does not serve Receivers (no
	// notification-controller): the rest is then empty.
	Installed bool
	// Covered maps a repository to the Ready Receiver that lists it.
	Covered map[Ref]string
	// NotReady maps a repository no Ready Receiver lists to the Receivers
	// that list it but are not Ready (or are suspended).
	NotReady map[Ref][]string
	// Uncovered are the repositories no Ready Receiver lists, in the order
	// given.
	Uncovered []Ref
	// Receivers are those looked at.
	Receivers []Receiver
}

// All says whether a webhook reaches every repository: the question the
// watch asks before it says its latency is the scan interval.
func (c Coverage) All() bool { return c.Installed && len(c.Uncovered) == 0 }

// CoverRepositories matches repos against receivers; repoLabels returns a
// repository's labels, for Receivers that select with name "*".
func CoverRepositories(receivers []Receiver, repos []Ref, repoLabels func(Ref) map[string]string) Coverage {
	c := Coverage{Installed: true, Covered: map[Ref]string{}, NotReady: map[Ref][]string{}, Receivers: receivers}
	for _, repo := range repos {
		for _, r := range receivers {
			if !slices.ContainsFunc(r.Resources, func(res ReceiverResource) bool { return res.lists(repo, repoLabels) }) {
				continue
			}
			if r.Ready {
				c.Covered[repo] = r.Key()
				break
			}
			c.NotReady[repo] = append(c.NotReady[repo], r.Key())
		}
		if _, ok := c.Covered[repo]; ok {
			delete(c.NotReady, repo)
			continue
		}
		c.Uncovered = append(c.Uncovered, repo)
	}
	return c
}

// ReceiverFix makes a Receiver for every configured repository (doctor,
// the watch's warning). Server-side apply, so that the token is not copied
// into the Secret's kubectl.kubernetes.io/last-applied-configuration
// annotation.
const ReceiverFix = "autodeploy manifests receiver | kubectl apply --server-side -f -"

// ReceiverNamespaces are where Receivers for repos are looked for: Flux's
// namespace, where `manifests receiver` puts one, and the repositories'
// own, each once.
func ReceiverNamespaces(fluxNamespace string, repos []Ref) []string {
	ns := []string{fluxNamespace}
	for _, r := range repos {
		if !slices.Contains(ns, r.Namespace) {
			ns = append(ns, r.Namespace)
		}
	}
	return ns
}

// ReceiverCoverage lists the Receivers of ReceiverNamespaces and says which
// of repos they cover: what doctor checks, and what the watch asks before
// it warns that its latency is the scan interval (Coverage.All). A cluster
// that does not serve Receivers (404) is Installed: false, not an error:
// runs from cron need no Receiver. The labels of a repository are read only
// when a Receiver selects with "*".
func ReceiverCoverage(ctx context.Context, dc dynamic.Interface, api API, fluxNamespace string, repos []Ref) (Coverage, error) {
	var receivers []Receiver
	for _, ns := range ReceiverNamespaces(fluxNamespace, repos) {
		l, err := dc.Resource(ReceiverGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) {
			return Coverage{}, nil
		}
		if err != nil {
			return Coverage{}, fmt.Errorf("list Receivers in %s: %w", ns, err)
		}
		for i := range l.Items {
			receivers = append(receivers, ParseReceiver(&l.Items[i]))
		}
	}
	var getErr error
	cache := map[Ref]map[string]string{}
	repoLabels := func(r Ref) map[string]string {
		if l, ok := cache[r]; ok {
			return l
		}
		u, err := dc.Resource(api.Repositories()).Namespace(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) && getErr == nil {
			getErr = fmt.Errorf("get ImageRepository %s (for the labels a Receiver selects with): %w", r, err)
		}
		if u != nil {
			cache[r] = u.GetLabels()
		}
		return cache[r]
	}
	c := CoverRepositories(receivers, repos, repoLabels)
	return c, getErr
}

// RepositoriesOf lists the ImageRepositories policies select from, each
// once, in the policies' order; a policy without a repository adds none.
func RepositoriesOf(policies []Policy) []Ref {
	var repos []Ref
	for _, p := range policies {
		ref := Ref{Namespace: p.RepoNamespace, Name: p.RepoName}
		if p.RepoName != "" && !slices.Contains(repos, ref) {
			repos = append(repos, ref)
		}
	}
	return repos
}

// RefList is refs as "ns/name, ns/name".
func RefList(refs []Ref) string {
	s := make([]string, len(refs))
	for i, r := range refs {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}
