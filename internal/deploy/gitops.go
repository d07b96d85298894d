package deploy

import (
	"context"
	"log/slog"
	"strings"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/image"
)

// How autodeploy shares a Deployment with Flux GitOps (README, "Flux
// GitOps"): autodeploy patches first, then git follows, because the
// ImageUpdateAutomation writes the same tag the policy selected (observed:
// within about a second; kustomize-controller's dry-run then finds no
// drift and writes nothing). When git does not follow, Flux puts git's
// image back; Plan recognises that (the image field owned by
// kustomize-controller again, over an image autodeploy deployed) and
// reports it instead of deploying again. A rollback makes git follow too:
// the failed tag is excluded in the ImageRepository (flux.Exclude), so the
// policy, then the automation, then Flux's apply all go back with it.

// KustomizationOf returns namespace/name of the Flux Kustomization that
// applies d (its kustomize.toolkit.fluxcd.io labels), "" when none.
func KustomizationOf(d *appsv1.Deployment) string {
	name, ns := d.Labels[flux.KustomizationNameLabel], d.Labels[flux.KustomizationNamespaceLabel]
	if name == "" || ns == "" {
		return ""
	}
	return ns + "/" + name
}

func refOf(nsName string) flux.Ref {
	ns, name, _ := strings.Cut(nsName, "/")
	return flux.Ref{Namespace: ns, Name: name}
}

// excludeFailed makes a rollback of a Deployment applied from git stick:
// the failed tag goes into its ImageRepository's exclusionList, and the
// repository is asked to rescan so that the policy moves back now.
// Failures are logged: the rollback itself stands, and status shows a
// failed image that comes back from git as a problem.
func (r *Runner) excludeFailed(ctx context.Context, s config.Service, dec Decision, cause error, log *slog.Logger) {
	if dec.Kustomization == "" || dec.Repository == "" {
		return
	}
	ref, err := image.Parse(dec.Target)
	if err != nil || ref.Tag == "" {
		return // a digest-only reference has no tag to exclude
	}
	repo := refOf(dec.Repository)
	ctx = context.WithoutCancel(ctx)
	added, err := flux.Exclude(ctx, r.Dynamic, r.api, repo, flux.Exclusion{Tag: ref.Tag, Service: s.Name, Reason: truncate(cause.Error(), 200), At: r.Now().UTC()})
	if err != nil {
		log.Error("could not exclude the failed tag: Flux may apply it again from git", "repository", repo.String(), "tag", ref.Tag, "error", err)
		return
	}
	if !added {
		return
	}
	log.Info("failed tag excluded so that git follows the rollback", "repository", repo.String(), "tag", ref.Tag)
	r.progress(s.Name, "excluded tag "+ref.Tag+" in ImageRepository "+repo.String()+": the policy, then git, go back too")
	r.rescan(ctx, repo, log)
}

// rescan asks an ImageRepository to scan now and waits (bounded) for it.
func (r *Runner) rescan(ctx context.Context, repo flux.Ref, log *slog.Logger) {
	rctx, cancel := context.WithTimeout(ctx, r.Config.Flux.ReconcileTimeout)
	defer cancel()
	for _, o := range flux.Reconcile(rctx, r.Dynamic, r.api.Repositories(), []flux.Ref{repo}, flux.Token(r.Now())) {
		if !o.OK {
			log.Warn("rescan after changing the exclusionList", "repository", repo.String(), "problem", o.Problem)
		}
	}
}

// releaseExclusions undoes autodeploy's exclusions in the policy's
// ImageRepository once the policy selected, and the run verified, an image
// the policy ranks above each excluded tag: removing the exclusion then
// cannot bring the bad tag back. Exclusions whose order cannot be told
// stay (status shows them).
func (r *Runner) releaseExclusions(ctx context.Context, in Input, dec Decision, log *slog.Logger) {
	if dec.Kustomization == "" || dec.Repository == "" || in.Policy == nil {
		return
	}
	ref, err := image.Parse(dec.Target)
	if err != nil || ref.Tag == "" {
		return
	}
	repo := refOf(dec.Repository)
	removed, err := flux.Unexclude(ctx, r.Dynamic, r.api, repo, func(e flux.Exclusion) bool {
		above, ok := in.Policy.Order.Prefers(ref.Tag, e.Tag)
		return ok && above
	})
	if err != nil {
		log.Warn("could not remove autodeploy's exclusions; the next deploy tries again", "repository", repo.String(), "error", err)
		return
	}
	for _, e := range removed {
		log.Info("exclusion removed: the policy ranks the deployed image above it", "repository", repo.String(), "tag", e.Tag, "deployed", ref.Tag)
	}
}
