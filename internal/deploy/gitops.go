package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/image"
)

// How autodeploy shares a Deployment with Flux GitOps (README, "Sharing a
// Deployment with Flux GitOps"): autodeploy patches first and brings git
// along (bringGitAlong): the ImageUpdateAutomation writes the same tag the
// policy selected (observed: within about a second), the run has the
// source fetch it, and kustomize-controller's dry-run then finds no drift
// and writes nothing. When git does not follow, Flux puts git's image
// back; Plan recognises that (the image field owned by kustomize-controller
// again, over an image autodeploy deployed) and reports it instead of
// deploying again. A rollback makes git follow too: the failed tag is
// excluded in the ImageRepository (flux.Exclude), so the policy, then the
// automation, then Flux's apply all go back with it (gitGoesBack).

// KustomizationOf returns namespace/name of the Flux Kustomization that
// applies d (its kustomize.toolkit.fluxcd.io labels), "" when none.
func KustomizationOf(d *appsv1.Deployment) string {
	name, ns := d.Labels[flux.KustomizationNameLabel], d.Labels[flux.KustomizationNamespaceLabel]
	if name == "" || ns == "" {
		return ""
	}
	return ns + "/" + name
}

// excludeFailed makes a rollback of a Deployment applied from git stick:
// the failed tag goes into its ImageRepository's exclusionList, and the
// repository is asked to rescan so that the policy moves back now.
// Failures are logged: the rollback itself stands, and status shows a
// failed image that comes back from git as a problem. It runs beside the
// rollback (recover), in the run's context: a signal stops it.
func (r *Runner) excludeFailed(ctx context.Context, s config.Service, dec Decision, log *slog.Logger) {
	if dec.Kustomization == "" || dec.Repository == "" {
		return
	}
	ref, err := image.Parse(dec.Target)
	if why := excludable(ref, err); why != "" {
		log.Warn("failed tag not excluded: Flux may apply it again from git", "image", dec.Target, "why", why)
		return
	}
	repo := flux.ParseRef(dec.Repository)
	// The reason names the service, not the failure: the failure's text
	// (a health check's answer) stays on the Deployment, not on a Flux
	// object others may read.
	added, err := flux.Exclude(ctx, r.Dynamic, r.api, repo, flux.Exclusion{Tag: ref.Tag, Service: s.Name, Reason: "automatic rollback of " + s.Name, At: r.Now().UTC()})
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
	if r.fluxSilent(repo) {
		// The policy cannot move while its controller is not answering:
		// waiting GitFollowBound for it would only lengthen the run.
		r.warn(log, s.Name+": git follows the rollback once Flux answers again (the excluded tag is in the ImageRepository)")
		return
	}
	if why := gitGoesBack(ctx, r.Dynamic, r.api, r.Now(), dec.Kustomization, s, dec.Target); why != "" {
		r.warn(log, s.Name+": "+why)
	}
}

// excludable says why the tag of ref must not be excluded, "" when it may:
// a digest-only reference has no tag, and a tag pinned by digest (Flux's
// digestReflectionPolicy) is mutable: excluding it would block every later
// build pushed under it.
func excludable(ref image.Ref, err error) string {
	switch {
	case err != nil:
		return err.Error()
	case ref.Tag == "":
		return "a digest has no tag to exclude"
	case ref.Digest != "":
		return "the tag is pinned by digest, so it is mutable: excluding it would block every later build of " + ref.Tag
	}
	return ""
}

// rescan asks an ImageRepository to scan now and waits for it, within
// what is left of the run's Flux budget (fluxWaits). A repository that did
// not answer the run's rescan is not asked again: its controller would not
// answer this one either, and the new exclusionList is a new generation,
// which the controller reconciles unasked once it is back.
func (r *Runner) rescan(ctx context.Context, repo flux.Ref, log *slog.Logger) {
	if r.fluxSilent(repo) || r.fluxLeft() <= 0 {
		log.Warn("rescan after changing the exclusionList not waited for", "repository", repo.String(), "problem", "Flux did not answer this run's rescan, or the run's Flux wait (flux.reconcileTimeout) is spent")
		return
	}
	rctx, done := r.fluxWait(ctx)
	defer done()
	for _, o := range flux.Reconcile(rctx, r.Dynamic, r.api.Repositories(), []flux.Ref{repo}, flux.Token(r.Now())) {
		if !o.OK {
			log.Warn("rescan after changing the exclusionList", "repository", repo.String(), "problem", o.Problem)
		}
	}
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
	removed, err := flux.Unexclude(ctx, r.Dynamic, r.api, repo, func(e flux.Exclusion) bool {
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

// GitFollowBound is how long a deploy of a Deployment applied from git
// waits, alongside its rollout, for the automation to write the tag and
// for the source to fetch it (observed with the real controllers: the
// automation commits within about a second).
const GitFollowBound = 10 * time.Second

// bringGitAlong closes the window in which Flux would put git's older
// image back over autodeploy's patch: until source-controller fetches the
// automation's commit (its interval, a minute in the seed), a Kustomization
// interval falling in between applies the older image. It runs right after
// the patch, alongside the rollout's wait (see gitFollows), and never fails
// the deploy: what goes wrong is a warning, and a revert that follows is
// reported by the next run.
func (r *Runner) bringGitAlong(ctx context.Context, in Input, dec Decision, log *slog.Logger) {
	if dec.Kustomization == "" || in.Policy == nil {
		return
	}
	if why := gitFollows(ctx, r.Dynamic, r.api, r.Now(), dec.Kustomization, *in.Policy, dec.Target); why != "" {
		r.warn(log, dec.Service+": "+why)
	}
}

// gitFollows waits (GitFollowBound at most) for the ImageUpdateAutomation
// to have written target's tag for policy to git, then asks the
// Kustomization's GitRepository to fetch now (as `flux reconcile source
// git`), so that kustomize-controller applies that revision at once and
// finds no drift. It returns why git does not follow, "" when it does or
// when it cannot be told (not a GitRepository, suspended, ctx cancelled).
func gitFollows(ctx context.Context, dc dynamic.Interface, api flux.API, now time.Time, kustomization string, policy flux.Policy, target string) string {
	ctx, cancel := context.WithTimeout(ctx, GitFollowBound)
	defer cancel()
	kref := flux.ParseRef(kustomization)
	u, err := dc.Resource(flux.KustomizationGVR).Namespace(kref.Namespace).Get(ctx, kref.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("Kustomization %s: %v", kustomization, err)
	}
	k := flux.ParseKustomization(u)
	if k.SourceKind != "GitRepository" || k.Suspended {
		return ""
	}
	ref, err := image.Parse(target)
	if err != nil || ref.Tag == "" {
		return ""
	}
	err = flux.AwaitAutomation(ctx, dc, api, policy.Namespace, k.Source, policy.Name, flux.ObservedRef(ref.Tag, ref.Digest))
	switch {
	case errors.Is(err, context.Canceled):
		return "" // the deploy failed: its rollback brings git back
	case errors.Is(err, flux.ErrNoAutomation):
		return fmt.Sprintf("%v %s: Flux will put git's image back (autodeploy doctor)", err, k.Source)
	case err != nil:
		return fmt.Sprintf("%v: Flux may put git's image back until git has the tag", err)
	}
	var problems []string
	for _, o := range flux.Reconcile(ctx, dc, flux.GitRepositoryGVR, []flux.Ref{k.Source}, flux.Token(now)) {
		if !o.OK {
			problems = append(problems, fmt.Sprintf("GitRepository %s: %s", o.Ref, o.Problem))
		}
	}
	return strings.Join(problems, "; ")
}

// gitGoesBack follows an exclusion of failed's tag: while the policy still
// selects it, it waits (bounded) for the policy's next write (on Flux < 2.7
// the policy moves unasked, a moment after its repository's rescan), then
// brings git along to the image the policy selects now (gitFollows): the
// source may already hold the failed tag's commit, and a Kustomization
// interval would apply it again until its next fetch.
func gitGoesBack(ctx context.Context, dc dynamic.Interface, api flux.API, now time.Time, kustomization string, s config.Service, failed string) string {
	ref := flux.Ref{Namespace: s.PolicyNamespace, Name: s.PolicyName}
	read := func() (flux.Policy, error) {
		u, err := dc.Resource(api.Policies()).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return flux.Policy{}, fmt.Errorf("read ImagePolicy %s: %w", ref, err)
		}
		return flux.ParsePolicy(u), nil
	}
	p, err := read()
	if err == nil && (p.Latest == "" || image.SameString(p.Latest, failed)) {
		// Not moved yet: wait until it selects another tag, bounded. Not
		// for its next write: Flux 2.6 writes it first with the old tags,
		// on its repository's progress write (issue 17 item 11).
		off := ""
		if fr, perr := image.Parse(failed); perr == nil {
			off = fr.Tag
		}
		flux.AwaitPolicies(ctx, dc, api.Policies(), []flux.Awaited{{Ref: ref, Off: off}}, GitFollowBound)
		p, err = read()
	}
	if err != nil {
		return err.Error()
	}
	if p.Latest == "" || image.SameString(p.Latest, failed) {
		return fmt.Sprintf("ImagePolicy %s did not move off %s after its exclusion", ref, failed)
	}
	return gitFollows(ctx, dc, api, now, kustomization, p, p.Latest)
}

// warn records a warning of the run (shown by run and status).
func (r *Runner) warn(log *slog.Logger, msg string) {
	log.Warn("git does not follow yet", "warning", msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warnings = append(r.warnings, msg)
}
