package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/autodeploy-dev/autodeploy/internal/ui"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// Record is one record of autodeploy's that forget removes (or, in a dry
// run, would remove).
type Record struct {
	// Object is named as kubectl names it: kind.group/name.
	Object    string `json:"object"`
	Namespace string `json:"namespace"`
	// What is the record: "annotation autodeploy.dev/hold", "exclusion
	// ^sha-3$", "spec.suspend".
	What string `json:"what"`
}

// ForgetResult says what Forget did.
type ForgetResult struct {
	Service string
	DryRun  bool
	// Configured: the name is a configured service, so its Deployment was
	// looked at; otherwise only exclusions were.
	Configured bool
	// DeploymentMissing is namespace/name of a configured service's
	// Deployment that does not exist: only exclusions were looked for.
	DeploymentMissing string
	Removed           []Record
	// Searched lists the ImageRepositories (namespace/name) whose
	// exclusions were looked at; NotSearched says which could not be
	// (a policy or repository that does not exist), and why.
	Searched    []string
	NotSearched []string
	// ForeignReconcile is the command that removes a reconcile: disabled
	// lever on the Deployment with no record of autodeploy's: someone
	// else's, left as it is.
	ForeignReconcile string
	// KustomizationGone: the Kustomization a legacy hold suspended no
	// longer exists; nothing to resume.
	KustomizationGone string
}

// forgetPlan is what forget removes from one Deployment and its
// ReplicaSets.
type forgetPlan struct {
	Deployment  []string            // annotation keys
	ReplicaSets map[string][]string // by ReplicaSet name
	Foreign     bool                // a reconcile lever without record: someone else's
	// Kustomization is namespace/name of the Kustomization a hold of
	// autodeploy 1.x suspended (rollback --suspend-flux), to resume.
	Kustomization string
}

// planForget says which annotations of d and its ReplicaSets rss are
// autodeploy's records. Every autodeploy.dev/* key is: the domain is
// autodeploy's, so a mark a later version added goes too. The reconcile
// lever (kustomize-controller's key) goes only where gitops says it is
// autodeploy's, and its record only with it: removing the record alone
// would make autodeploy's lever look like someone else's.
func planForget(d *appsv1.Deployment, rss []*appsv1.ReplicaSet) forgetPlan {
	h, held := ParseHold(d.Annotations)
	legacy := held && h.ReconcileDisabled
	// all: forget is an explicit release, as resume is, held or not.
	release := gitops.ReleaseReconcile(d, rss, held, true, legacy)
	p := forgetPlan{Deployment: recordKeys(d.Annotations, release.Deployment), Foreign: release.Foreign, ReplicaSets: map[string][]string{}}
	if held {
		p.Kustomization = h.Kustomization
	}
	for _, rs := range rss {
		if keys := recordKeys(rs.Annotations, slices.Contains(release.ReplicaSets, rs.Name)); len(keys) > 0 {
			p.ReplicaSets[rs.Name] = keys
		}
	}
	return p
}

// recordKeys lists, sorted, the keys of ann that are autodeploy's records;
// lever: the reconcile lever there is autodeploy's and goes with them.
func recordKeys(ann map[string]string, lever bool) []string {
	var out []string
	for k := range ann {
		switch {
		case k == gitops.AnnReconcileDisabled || k == flux.KustomizeReconcileAnnotation:
			if lever {
				out = append(out, k)
			}
		case strings.HasPrefix(k, prefix):
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Forget removes every record autodeploy keeps for the service name: the
// marks on its Deployment and ReplicaSets, autodeploy's reconcile lever
// with its record, the Kustomization a legacy hold suspended, and the
// exclusions recorded under the name in the ImageRepository of every
// configured policy. The name need not be configured: a service renamed
// or removed from the config left exclusions behind, and they are found by
// name; its Deployment, if any, is not known, and not looked at. The
// caller holds the run's lock, and the Deployment's write is conditional
// on what was read, so no mark written in between is lost unseen.
func (m *Manager) Forget(ctx context.Context, cfg *config.Config, name string, dryRun bool) (ForgetResult, error) {
	res := ForgetResult{Service: name, DryRun: dryRun}
	log := m.Log.With("svc", name, "by", m.By)
	var rsErr error
	if s, ok := cfg.Service(name); ok {
		res.Configured = true
		var nf *ErrNotFound
		switch err := m.forgetDeployment(ctx, s, dryRun, &res); {
		case errors.As(err, &nf):
			res.DeploymentMissing = nf.Namespace + "/" + nf.Name
		case errors.As(err, new(*ReplicaSetMarksError)):
			// The Deployment is done; the exclusions go anyway.
			rsErr = fmt.Errorf("%w; run 'autodeploy forget %s' again to remove them", err, name)
		case err != nil:
			// The caller logs the failure ("forget failed", as for every
			// manual command: this line was a second one); what went
			// before it is said.
			logRemoved(log, res, dryRun)
			return res, err
		}
	}
	if err := m.forgetExclusions(ctx, cfg.Services, name, dryRun, &res); err != nil {
		logRemoved(log, res, dryRun)
		return res, err
	}
	if err := m.forgetPromotionPolicies(ctx, cfg.Services, name, dryRun, &res); err != nil {
		logRemoved(log, res, dryRun)
		return res, err
	}
	if dryRun {
		log.Info("forget", "dryRun", true, "records", len(res.Removed), "configured", res.Configured)
		return res, rsErr
	}
	logRemoved(log, res, dryRun)
	log.Info("forgotten", "records", len(res.Removed), "configured", res.Configured, "repositories", strings.Join(res.Searched, ","))
	if len(res.Removed) > 0 {
		m.Notify.Send(ctx, notify.Event{Kind: notify.Forget, Level: "info", Service: name, Time: m.Now().UTC(), Reason: ui.Count(len(res.Removed), "record", "records") + " removed", By: m.By})
	}
	return res, rsErr
}

// logRemoved logs each record res says is gone (none in a dry run).
func logRemoved(log *slog.Logger, res ForgetResult, dryRun bool) {
	if dryRun {
		return
	}
	for _, r := range res.Removed {
		log.Info("record removed", "object", r.Object, "namespace", r.Namespace, "record", r.What)
	}
}

// forgetDeployment removes s's marks from its Deployment (conditionally)
// and then from its ReplicaSets, and resumes a Kustomization a legacy hold
// suspended, as Resume does.
func (m *Manager) forgetDeployment(ctx context.Context, s config.Service, dryRun bool, res *ForgetResult) error {
	var (
		d    *appsv1.Deployment
		plan forgetPlan
		sus  *Record
	)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		if d, err = m.get(ctx, s); err != nil {
			return err
		}
		owned, err := rollout.ListOwned(ctx, m.Kube, d)
		if err != nil {
			return err
		}
		plan, sus, res.KustomizationGone = planForget(d, owned), nil, ""
		if plan.Kustomization != "" {
			k := flux.ParseRef(plan.Kustomization)
			sus = &Record{Object: "kustomization.kustomize.toolkit.fluxcd.io/" + k.Name, Namespace: k.Namespace, What: "spec.suspend (set by rollback --suspend-flux of autodeploy 1.x)"}
			if !dryRun {
				// Before the hold goes: a hold kept is what says the
				// Kustomization is still to be resumed.
				switch err := gitops.ResumeSuspended(ctx, m.Dynamic, plan.Kustomization); {
				case apierrors.IsNotFound(err):
					res.KustomizationGone, sus = plan.Kustomization, nil
				case err != nil:
					return fmt.Errorf("could not resume Flux Kustomization %s (nothing forgotten; try again, or flux resume kustomization %s -n %s): %w", plan.Kustomization, k.Name, k.Namespace, err)
				}
			}
		}
		if dryRun {
			return nil
		}
		ann := map[string]string{}
		for _, k := range plan.Deployment {
			ann[k] = "" // removes it
		}
		_, err = rollout.AnnotateIfUnchanged(ctx, m.Kube, d, ann)
		return err
	})
	if err != nil {
		return err
	}
	if plan.Foreign {
		res.ForeignReconcile = fmt.Sprintf("kubectl annotate deployment/%s -n %s %s-", d.Name, d.Namespace, flux.KustomizeReconcileAnnotation)
	}
	if sus != nil {
		res.Removed = append(res.Removed, *sus)
	}
	for _, k := range plan.Deployment {
		res.Removed = append(res.Removed, Record{Object: "deployment.apps/" + d.Name, Namespace: d.Namespace, What: "annotation " + k})
	}
	// ReplicaSets with the same keys in one go: a lever that is someone
	// else's on one ReplicaSet is never in another's patch.
	var rsRecords []Record
	groups := map[string][]string{}
	for name, keys := range plan.ReplicaSets {
		g := strings.Join(keys, "\x00")
		groups[g] = append(groups[g], name)
	}
	for _, g := range slices.Sorted(maps.Keys(groups)) {
		names, keys := groups[g], strings.Split(g, "\x00")
		if !dryRun {
			marks := map[string]string{}
			for _, k := range keys {
				marks[k] = ""
			}
			if err := m.copyToReplicaSets(ctx, s, d, marks, names...); err != nil {
				return err
			}
		}
		for _, n := range names {
			for _, k := range keys {
				rsRecords = append(rsRecords, Record{Object: "replicaset.apps/" + n, Namespace: d.Namespace, What: "annotation " + k})
			}
		}
	}
	// One ReplicaSet's lines together, whatever the grouping.
	slices.SortStableFunc(rsRecords, func(a, b Record) int { return strings.Compare(a.Object, b.Object) })
	res.Removed = append(res.Removed, rsRecords...)
	return nil
}

// forgetExclusions removes the exclusions recorded for name from the
// ImageRepository of every configured policy: a renamed service's policy
// may be another name's now, and a repository may be shared.
func (m *Manager) forgetExclusions(ctx context.Context, services []config.Service, name string, dryRun bool, res *ForgetResult) error {
	drop := func(e gitops.Exclusion) bool { return e.Service == name }
	seen := map[flux.Ref]bool{}
	for _, s := range services {
		if s.PolicyName == "" {
			// Promoted: no ImagePolicy, so no repository of its own (its
			// source's is searched as the source's).
			continue
		}
		api, repo, err := m.policyRepository(ctx, s)
		if apierrors.IsNotFound(err) {
			res.NotSearched = append(res.NotSearched, fmt.Sprintf("service %s: %v", s.Name, err))
			continue
		}
		if err != nil {
			return err
		}
		if seen[repo] {
			continue
		}
		seen[repo] = true
		var removed []gitops.Exclusion
		if dryRun {
			var u *unstructured.Unstructured
			u, err = m.Dynamic.Resource(api.Repositories()).Namespace(repo.Namespace).Get(ctx, repo.Name, metav1.GetOptions{})
			if err == nil {
				removed = slices.DeleteFunc(gitops.ParseExclusions(u), func(e gitops.Exclusion) bool { return !drop(e) })
			} else {
				err = fmt.Errorf("read ImageRepository %s: %w", repo, err)
			}
		} else {
			removed, err = gitops.Unexclude(ctx, m.Dynamic, api, repo, drop)
		}
		if apierrors.IsNotFound(err) {
			res.NotSearched = append(res.NotSearched, fmt.Sprintf("ImagePolicy %s/%s of service %s: %v", s.PolicyNamespace, s.PolicyName, s.Name, err))
			continue
		}
		if err != nil {
			return err
		}
		res.Searched = append(res.Searched, repo.String())
		for _, e := range removed {
			res.Removed = append(res.Removed, Record{Object: "imagerepository.image.toolkit.fluxcd.io/" + repo.Name, Namespace: repo.Namespace, What: "exclusion " + e.Pattern})
		}
	}
	return nil
}

// forgetPromotionPolicies deletes the ImagePolicies autodeploy created for
// the promotions of name (gitops.PointPolicy), found by their record (the
// managed-by label, then the promotion-of annotation) in the namespaces
// of the configured policies and owned policies: a renamed service's
// policy is found too. One at that name without the record is someone
// else's and stays.
func (m *Manager) forgetPromotionPolicies(ctx context.Context, services []config.Service, name string, dryRun bool, res *ForgetResult) error {
	nss := config.PolicyNamespaces(services)
	if len(nss) == 0 {
		return nil
	}
	api, err := flux.Detect(ctx, m.Kube.Discovery())
	if err != nil {
		return err
	}
	for _, ns := range nss {
		list, err := m.Dynamic.Resource(api.Policies()).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: gitops.LabelManagedBy + "=" + gitops.ManagedByAutodeploy})
		if err != nil {
			return fmt.Errorf("list ImagePolicies in %s: %w", ns, err)
		}
		for i := range list.Items {
			u := &list.Items[i]
			if !gitops.OwnedBy(u, name) {
				continue
			}
			ref := flux.Ref{Namespace: ns, Name: u.GetName()}
			deleted, err := gitops.DeletePolicy(ctx, m.Dynamic, api, ref, name, dryRun)
			if err != nil {
				return err
			}
			if deleted {
				res.Removed = append(res.Removed, Record{Object: "imagepolicy.image.toolkit.fluxcd.io/" + ref.Name, Namespace: ns, What: "the ImagePolicy itself (created for the promotion of " + name + ")"})
			}
		}
	}
	return nil
}
