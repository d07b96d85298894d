package gitops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/image"
)

// How autodeploy shares a Deployment with Flux GitOps (README, "Sharing a
// Deployment with Flux GitOps"): autodeploy patches first and brings git
// along (Follows): the ImageUpdateAutomation writes the same tag the
// policy selected (observed: within about a second), the run has the
// source fetch it, and kustomize-controller's dry-run then finds no drift
// and writes nothing. When git does not follow, Flux puts git's image
// back; deploy.Plan recognises that (the image field owned by
// kustomize-controller again, over an image autodeploy deployed) and
// reports it instead of deploying again. A rollback makes git follow too:
// the failed tag is excluded in the ImageRepository (Exclude), so the
// policy, then the automation, then Flux's apply all go back with it
// (GoesBack).

// KustomizationOf returns namespace/name of the Flux Kustomization that
// applies d (its kustomize.toolkit.fluxcd.io labels), "" when none.
func KustomizationOf(d *appsv1.Deployment) string {
	name, ns := d.Labels[flux.KustomizationNameLabel], d.Labels[flux.KustomizationNamespaceLabel]
	if name == "" || ns == "" {
		return ""
	}
	return ns + "/" + name
}

// Excludable says why the tag of ref must not be excluded, "" when it may:
// a digest-only reference has no tag, and a tag pinned by digest (Flux's
// digestReflectionPolicy) is mutable: excluding it would block every later
// build pushed under it.
func Excludable(ref image.Ref, err error) string {
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

// FollowBound is how long a deploy of a Deployment applied from git waits,
// alongside its rollout, for the automation to write the tag and for the
// source to fetch it (observed with the real controllers: the automation
// commits within about a second).
const FollowBound = 10 * time.Second

// Follows waits (FollowBound at most) for the ImageUpdateAutomation to have
// written target's tag for policy to git, then asks the Kustomization's
// GitRepository to fetch now (as `flux reconcile source git`), so that
// kustomize-controller applies that revision at once and finds no drift.
// It returns why git does not follow, "" when it does or when it cannot be
// told (not a GitRepository, suspended, ctx cancelled).
func Follows(ctx context.Context, dc dynamic.Interface, api flux.API, now time.Time, kustomization string, policy flux.Policy, target string) string {
	ctx, cancel := context.WithTimeout(ctx, FollowBound)
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

// GoesBack follows an exclusion of failed's tag: while the policy still
// selects it, it waits (bounded) for the policy to select another tag (on
// Flux < 2.7 the policy moves unasked, a moment after its repository's
// rescan), then brings git along to the image the policy selects now
// (Follows): the source may already hold the failed tag's commit, and a
// Kustomization interval would apply it again until its next fetch.
func GoesBack(ctx context.Context, dc dynamic.Interface, api flux.API, now time.Time, kustomization string, policy flux.Ref, failed string) string {
	read := func() (flux.Policy, error) {
		u, err := dc.Resource(api.Policies()).Namespace(policy.Namespace).Get(ctx, policy.Name, metav1.GetOptions{})
		if err != nil {
			return flux.Policy{}, fmt.Errorf("read ImagePolicy %s: %w", policy, err)
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
		flux.AwaitPolicies(ctx, dc, api.Policies(), []flux.Awaited{{Ref: policy, Off: off}}, FollowBound)
		p, err = read()
	}
	if err != nil {
		return err.Error()
	}
	if p.Latest == "" || image.SameString(p.Latest, failed) {
		return fmt.Sprintf("ImagePolicy %s did not move off %s after its exclusion", policy, failed)
	}
	return Follows(ctx, dc, api, now, kustomization, p, p.Latest)
}

// Git is what the rollbacks need to make git go back with them.
type Git struct {
	Dynamic dynamic.Interface
	API     flux.API
	Now     func() time.Time
}

// ErrNotExcludable: the image rolled back from has no tag that may be
// excluded (Excludable).
var ErrNotExcludable = errors.New("not excluded")

// RolledBack is what ExcludeRolledBack did.
type RolledBack struct {
	// Added: the tag's pattern is new in the exclusionList (false: it was
	// there already, someone else's or an earlier rollback's).
	Added bool
	// Warning says why git does not follow the rollback yet, "" when it
	// does.
	Warning string
}

// ExcludeRolledBack is the one path by which a rollback, automatic or
// manual, of a Deployment applied from git makes git go back with it: the
// tag rolled back from goes into the exclusionList of the policy's
// ImageRepository, recorded as the service's; rescan asks the repository to
// scan within the caller's budget and says whether it was answered (a
// repository not answering cannot move its policy: waiting for the policy
// would only lengthen the command); then git follows the policy's new
// choice (GoesBack).
func (g Git) ExcludeRolledBack(ctx context.Context, service, kustomization string, policy, repo flux.Ref, img, reason string, rescan func(context.Context, flux.Ref) bool) (RolledBack, error) {
	var out RolledBack
	ref, err := image.Parse(img)
	if why := Excludable(ref, err); why != "" {
		return out, fmt.Errorf("%w: %s: %s", ErrNotExcludable, img, why)
	}
	out.Added, err = Exclude(ctx, g.Dynamic, g.API, repo, Exclusion{Tag: ref.Tag, Service: service, Reason: reason, At: g.Now().UTC()})
	if err != nil || !out.Added {
		return out, err
	}
	if !rescan(ctx, repo) {
		out.Warning = "git follows the rollback once Flux answers again (the excluded tag is in ImageRepository " + repo.String() + ")"
		return out, nil
	}
	out.Warning = GoesBack(ctx, g.Dynamic, g.API, g.Now(), kustomization, policy, img)
	return out, nil
}

// Back is what a rollback of a Deployment applied from git needs for git
// to go back with it.
type Back struct {
	Service, Kustomization string
	// Failed is the image rolled back from; Restored the image rolled
	// back to.
	Failed, Restored string
	// Reason is recorded beside an exclusion.
	Reason string
	// Policy and Repository are the service's ImagePolicy and its
	// ImageRepository (the exclusion lever).
	Policy, Repository flux.Ref
	// Owned, for a promoted service, is the ImagePolicy autodeploy owns
	// for it, over Root's ImageRepository (the promotion lever); nil
	// otherwise.
	Owned, Root *flux.Ref
	// Rescan asks the repository to scan after an exclusion, within the
	// caller's budget; false when it was not answered.
	Rescan func(context.Context, flux.Ref) bool
}

// GoBack is the one path by which a rollback, automatic or manual, of a
// Deployment applied from git makes git go back with it. A service with
// an ImagePolicy of its own: the failed tag is excluded in its
// ImageRepository (ExcludeRolledBack). A promoted service: its owned
// ImagePolicy is pointed back at the restored image's tag (PointPolicy),
// and git follows it (Follows); the shared ImageRepository keeps the tag,
// which the source verified (the target remembers it as failed, and is
// never promoted it again). Added says a lever moved.
func (g Git) GoBack(ctx context.Context, b Back) (RolledBack, error) {
	if b.Owned == nil {
		return g.ExcludeRolledBack(ctx, b.Service, b.Kustomization, b.Policy, b.Repository, b.Failed, b.Reason, b.Rescan)
	}
	var out RolledBack
	p, err := PointPolicy(ctx, g.Dynamic, g.API, *b.Owned, *b.Root, b.Service, b.Restored, flux.Token(g.Now()))
	if err != nil {
		return out, err
	}
	out.Added = p.Changed
	out.Warning = Follows(ctx, g.Dynamic, g.API, g.Now(), b.Kustomization, flux.Policy{Namespace: b.Owned.Namespace, Name: b.Owned.Name}, b.Restored)
	return out, nil
}
