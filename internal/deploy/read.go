package deploy

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// The reads of a run: one LIST per namespace for the snapshot, and one
// service's objects again right before acting on them.

// readService reads what Plan needs for one service: its Deployment, the
// ReplicaSets it owns, and its ImagePolicy (3 requests).
func (r *Runner) readService(ctx context.Context, api flux.API, s config.Service) (Input, error) {
	in := Input{Service: s, Now: r.Now(), IgnoreWindows: r.ignoreWindows, PromoteNow: r.promoteFor(s)}
	d, err := r.get(ctx, s)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return in, fmt.Errorf("read Deployment %s/%s: %w", s.Namespace, s.Deployment, err)
	default:
		in.Deployment = d
		if in.ReplicaSets, err = rollout.ListOwned(ctx, r.Kube, d); err != nil {
			return in, fmt.Errorf("list ReplicaSets of %s/%s: %w", s.Namespace, s.Deployment, err)
		}
	}
	if s.Promote != nil {
		// The source as it is now: it may have been verified (or rolled
		// back) earlier in this run.
		src, err := r.source(ctx, s, nil)
		in.Source = src
		if err != nil || in.Deployment == nil || gitops.KustomizationOf(in.Deployment) == "" {
			return in, err
		}
		in.Owned, err = readOwned(ctx, r.Dynamic, api, s)
		return in, err
	}
	u, err := r.Dynamic.Resource(api.Policies()).Namespace(s.PolicyNamespace).Get(ctx, s.PolicyName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return in, fmt.Errorf("read ImagePolicy %s/%s: %w", s.PolicyNamespace, s.PolicyName, err)
	default:
		p := flux.ParsePolicy(u)
		in.Policy = &p
	}
	return in, nil
}

// readOwned reads the ImagePolicy a promoted service applied from git
// owns (nil when it does not exist yet: the first promotion creates it).
func readOwned(ctx context.Context, dc dynamic.Interface, api flux.API, s config.Service) (*OwnedPolicy, error) {
	owned, _ := promotionRefs(s)
	u, err := dc.Resource(api.Policies()).Namespace(owned.Namespace).Get(ctx, owned.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read ImagePolicy %s (promote.imagePolicy of %s): %w", owned, s.Name, err)
	}
	return &OwnedPolicy{Policy: flux.ParsePolicy(u), Ours: gitops.OwnedBy(u, s.Name)}, nil
}

// readEach reads the services one by one (readService).
func (r *Runner) readEach(ctx context.Context, api flux.API, services []config.Service) ([]Input, error) {
	inputs := make([]Input, 0, len(services))
	for _, s := range services {
		in, err := r.readService(ctx, api, s)
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, in)
	}
	return inputs, nil
}

// listPolicies lists the ImagePolicies with one LIST per namespace.
func (r *Runner) listPolicies(ctx context.Context, api flux.API, services []config.Service) (map[string]*flux.Policy, error) {
	out := map[string]*flux.Policy{}
	for _, ns := range config.PolicyNamespaces(services) {
		list, err := r.Dynamic.Resource(api.Policies()).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list ImagePolicies in %s: %w", ns, err)
		}
		for i := range list.Items {
			p := flux.ParsePolicy(&list.Items[i])
			out[p.Key()] = &p
		}
	}
	return out, nil
}

// read lists Deployments and ReplicaSets with one LIST per namespace each,
// however many services live there.
func (r *Runner) read(ctx context.Context, services []config.Service, policies map[string]*flux.Policy) ([]Input, error) {
	deps := map[string]*appsv1.Deployment{}
	rss := map[string][]appsv1.ReplicaSet{}
	for _, ns := range config.DeploymentNamespaces(services) {
		dl, err := r.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list Deployments in %s: %w", ns, err)
		}
		for i := range dl.Items {
			deps[ns+"/"+dl.Items[i].Name] = &dl.Items[i]
		}
		rl, err := r.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list ReplicaSets in %s: %w", ns, err)
		}
		rss[ns] = rl.Items
	}
	inputs := make([]Input, 0, len(services))
	for _, s := range services {
		in := Input{Service: s, Deployment: deps[s.Namespace+"/"+s.Deployment], Policy: policies[s.PolicyNamespace+"/"+s.PolicyName]}
		if in.Deployment != nil {
			in.ReplicaSets = rollout.Owned(in.Deployment, rss[s.Namespace])
		}
		if s.Promote != nil {
			src, err := r.source(ctx, s, deps)
			if err != nil {
				return nil, err
			}
			in.Source = src
		}
		inputs = append(inputs, in)
	}
	return inputs, nil
}

// promoteFor is the promotion a person asked for s in this run, if any.
func (r *Runner) promoteFor(s config.Service) *PromoteNow {
	if p := r.promoteNow; p != nil && p.Service == s.Name {
		return p
	}
	return nil
}

// SourceOf is the source of s's promotion with its Deployment from deps
// (namespace/name; nil Deployment when absent there); nil when s is not
// promoted or its source is not configured (config validate refuses that).
func SourceOf(cfg *config.Config, s config.Service, deps map[string]*appsv1.Deployment) *Source {
	if s.Promote == nil {
		return nil
	}
	from, ok := cfg.Service(s.Promote.From)
	if !ok {
		return nil
	}
	return &Source{Service: from, Deployment: deps[from.Namespace+"/"+from.Deployment]}
}

// source reads the source of s's promotion: from deps when listed there
// (its namespace is listed when it is configured in this run), else with a
// GET (run --service production alone).
func (r *Runner) source(ctx context.Context, s config.Service, deps map[string]*appsv1.Deployment) (*Source, error) {
	out := SourceOf(r.Config, s, deps)
	if out == nil {
		return nil, fmt.Errorf("service %s: promote.from %s is not configured", s.Name, s.Promote.From)
	}
	from := out.Service
	if out.Deployment != nil {
		return out, nil
	}
	d, err := r.get(ctx, from)
	switch {
	case apierrors.IsNotFound(err):
		return out, nil
	case err != nil:
		return nil, fmt.Errorf("read Deployment %s/%s (promote.from of %s): %w", from.Namespace, from.Deployment, s.Name, err)
	}
	out.Deployment = d
	return out, nil
}

// configured keeps the policies the services use: a namespace shared with
// other teams' policies must not make every run wait on theirs.
func configured(policies map[string]*flux.Policy, services []config.Service) map[string]*flux.Policy {
	out := map[string]*flux.Policy{}
	for _, s := range services {
		if p, ok := policies[s.PolicyNamespace+"/"+s.PolicyName]; ok {
			out[p.Key()] = p
		}
	}
	return out
}
