package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// excludeFailed makes an automatic rollback of a Deployment applied from
// git stick (gitops.Git.ExcludeRolledBack, the manual rollback's path
// too). Failures are logged: the rollback itself stands, and status shows
// a failed image that comes back from git as a problem. It runs beside the
// rollback (recover), in the run's context: a signal stops it.
func (r *Runner) excludeFailed(ctx context.Context, s config.Service, dec Decision, log *slog.Logger) {
	if dec.Kustomization == "" || (dec.Repository == "" && dec.PromotionPolicy == "") {
		return
	}
	repo := flux.ParseRef(dec.Repository)
	g := gitops.Git{Dynamic: r.Dynamic, API: r.api, Now: r.Now}
	// The reason names the service, not the failure: the failure's text
	// (a health check's answer) stays on the Deployment, not on a Flux
	// object others may read.
	back := gitops.Back{Service: s.Name, Kustomization: dec.Kustomization, Failed: dec.Target, Restored: dec.Current, Reason: "automatic rollback of " + s.Name,
		Policy: flux.Ref{Namespace: s.PolicyNamespace, Name: s.PolicyName}, Repository: repo,
		Rescan: func(ctx context.Context, repo flux.Ref) bool {
			r.progress(s.Name, "excluded the failed tag in ImageRepository "+repo.String()+": the policy, then git, go back too")
			return r.rescan(ctx, repo, log)
		}}
	if dec.PromotionPolicy != "" {
		owned, root := promotionRefs(s)
		back.Owned, back.Root = &owned, &root
		r.progress(s.Name, "pointing ImagePolicy "+owned.String()+" back at "+dec.Current+": git goes back too")
	}
	out, err := g.GoBack(ctx, back)
	switch {
	case err != nil && back.Owned != nil:
		log.Error("could not point the promotion's ImagePolicy back: Flux may apply the failed image again from git", "imagePolicy", back.Owned.String(), "image", dec.Current, "error", err)
		return
	case out.Added && back.Owned != nil:
		log.Info("the promotion's ImagePolicy points back at the image before, so that git follows the rollback", "imagePolicy", back.Owned.String(), "image", dec.Current)
	}
	switch {
	case errors.Is(err, gitops.ErrNotExcludable):
		log.Warn("failed tag not excluded: Flux may apply it again from git", "why", err)
		return
	case err != nil:
		log.Error("could not exclude the failed tag: Flux may apply it again from git", "repository", repo.String(), "image", dec.Target, "error", err)
		return
	case out.Added:
		log.Info("failed tag excluded so that git follows the rollback", "repository", repo.String(), "image", dec.Target)
	}
	if out.Warning != "" {
		r.warn(log, s.Name+": "+out.Warning)
	}
}

// rescan asks an ImageRepository to scan now and waits for it, within
// what is left of the run's Flux budget (fluxWaits); false when it was not
// answered. A repository that did not answer the run's rescan is not
// asked again: its controller would not answer this one either, and the
// new exclusionList is a new generation, which the controller reconciles
// unasked once it is back.
func (r *Runner) rescan(ctx context.Context, repo flux.Ref, log *slog.Logger) bool {
	if r.fluxSilent(repo) || r.fluxLeft() <= 0 {
		log.Warn("rescan after changing the exclusionList not waited for", "repository", repo.String(), "problem", "Flux did not answer this run's rescan, or the run's Flux wait (flux.reconcileTimeout) is spent")
		return false
	}
	rctx, done := r.fluxWait(ctx)
	defer done()
	answered, problems := gitops.Rescan(rctx, r.Dynamic, r.api, repo, r.Now())
	for _, p := range problems {
		log.Warn("rescan after changing the exclusionList", "repository", repo.String(), "problem", p)
	}
	return answered
}

// releaseExclusions undoes this service's exclusions in the policy's
// ImageRepository once the policy selects an image it ranks above each
// excluded tag, and the Deployment runs it (deployed and verified by this
// run, or applied by Flux from git): removing the exclusion then cannot
// bring the bad tag back. Exclusions of other services sharing the
// repository, and those whose order cannot be told, stay (status shows
// them).
func (r *Runner) releaseExclusions(ctx context.Context, in Input, dec Decision, log *slog.Logger) {
	if dec.Kustomization == "" || dec.Repository == "" || in.Policy == nil {
		return
	}
	ref, err := image.Parse(dec.Target)
	if err != nil || ref.Tag == "" {
		return
	}
	repo := flux.ParseRef(dec.Repository)
	removed, err := gitops.Unexclude(ctx, r.Dynamic, r.api, repo, func(e gitops.Exclusion) bool {
		above, ok := in.Policy.Order.Prefers(ref.Tag, e.Tag)
		return e.Service == dec.Service && ok && above
	})
	if err != nil {
		log.Warn("could not remove autodeploy's exclusions; the next deploy tries again", "repository", repo.String(), "error", err)
		return
	}
	for _, e := range removed {
		log.Info("exclusion removed: the policy ranks the deployed image above it", "repository", repo.String(), "tag", e.Tag, "deployed", ref.Tag)
	}
}

// bringGitAlong closes the window in which Flux would put git's older
// image back over autodeploy's patch: until source-controller fetches the
// automation's commit (its interval, a minute in the seed), a Kustomization
// interval falling in between applies the older image. It runs right after
// the patch, alongside the rollout's wait (see gitops.Follows), and never fails
// the deploy: what goes wrong is a warning, and a revert that follows is
// reported by the next run.
func (r *Runner) bringGitAlong(ctx context.Context, in Input, dec Decision, log *slog.Logger) {
	policy := in.Policy
	if dec.PromotionPolicy != "" {
		// The policy the target's setter marker names: the owned one,
		// pointed at the target before the patch (promote).
		ref := flux.ParseRef(dec.PromotionPolicy)
		policy = &flux.Policy{Namespace: ref.Namespace, Name: ref.Name}
	}
	if dec.Kustomization == "" || policy == nil {
		return
	}
	if why := gitops.Follows(ctx, r.Dynamic, r.api, r.Now(), dec.Kustomization, *policy, dec.Target); why != "" {
		r.warn(log, dec.Service+": "+why)
	}
}

// promotionRefs are a promoted service's owned ImagePolicy and the
// chain's root policy (config promote).
func promotionRefs(s config.Service) (owned, root flux.Ref) {
	p := s.Promote
	return flux.Ref{Namespace: p.PolicyNamespace, Name: p.PolicyName}, flux.Ref{Namespace: p.RootPolicyNamespace, Name: p.RootPolicyName}
}

// promote points the ImagePolicy autodeploy owns for a promoted service
// applied from git at the deploy's target, before the Deployment's patch:
// the automation then writes exactly that tag into the setter marker that
// names the policy, and Flux's apply agrees with the patch (git follows:
// bringGitAlong). Without it Flux would put git's image back, so a
// failure here deploys nothing.
func (r *Runner) promote(ctx context.Context, s config.Service, dec Decision, log *slog.Logger) error {
	owned, root := promotionRefs(s)
	p, err := gitops.PointPolicy(ctx, r.Dynamic, r.api, owned, root, s.Name, dec.Target, flux.Token(r.Now()))
	if err != nil {
		log.Error("could not point the promotion's ImagePolicy at the target: nothing deployed", "imagePolicy", owned.String(), "error", err)
		return fmt.Errorf("%w: nothing deployed (without it, Flux would put git's image back)", err)
	}
	log.Info("the promotion's ImagePolicy selects the target, for the automation to write it to git", "imagePolicy", owned.String(), "created", p.Created, "changed", p.Changed, "target", dec.Target)
	return nil
}

// warn records a warning of the run (shown by run and status).
func (r *Runner) warn(log *slog.Logger, msg string) {
	log.Warn("git does not follow yet", "warning", msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warnings = append(r.warnings, msg)
}

// releaseLevers takes away the reconcile levers of autodeploy's that no
// hold explains any more (gitops.ReleaseReconcile): a hold deleted by hand,
// a lever and record revived from a ReplicaSet by kubectl rollout undo, a
// record whose lever someone removed. A lever without a record is someone
// else's: reported, left alone. Failures are warnings: the next run tries
// again.
func (r *Runner) releaseLevers(ctx context.Context, in Input, log *slog.Logger) {
	d := in.Deployment
	hold, held := ParseHold(d.Annotations)
	rel := gitops.ReleaseReconcile(d, in.ReplicaSets, held, false, hold.ReconcileDisabled)
	if rel.Foreign {
		log.Warn("Flux never applies or prunes this Deployment: "+flux.KustomizeReconcileAnnotation+" is "+flux.ReconcileDisabled+", not set by autodeploy",
			"fix", fmt.Sprintf("kubectl annotate deployment/%s -n %s %s-", d.Name, d.Namespace, flux.KustomizeReconcileAnnotation))
	}
	if !rel.Any() {
		return
	}
	lever := map[string]string{}
	gitops.EnableReconcile(lever)
	if rel.Deployment {
		if _, err := rollout.AnnotateIfUnchanged(ctx, r.Kube, d, lever); err != nil {
			log.Warn("could not release autodeploy's reconcile lever; the next run tries again", "error", err)
			return
		}
	}
	if len(rel.ReplicaSets) > 0 {
		if err := rollout.AnnotateReplicaSets(ctx, r.Kube, d, lever, rel.ReplicaSets...); err != nil {
			log.Warn("could not release autodeploy's reconcile lever on the ReplicaSets; the next run tries again", "error", err)
			return
		}
	}
	log.Info("released autodeploy's reconcile lever: the service is not held, Flux applies the Deployment again", "deployment", rel.Deployment, "replicaSets", rel.ReplicaSets)
}
