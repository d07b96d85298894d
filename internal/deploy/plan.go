package deploy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/ui"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// Action is what a run does with one service.
type Action string

const (
	UpToDate Action = "up-to-date"
	Deploy   Action = "deploy"
	// Verify finishes the check of a rollout an earlier run started but did
	// not see through (interrupted, or the host rebooted).
	Verify Action = "verify"
	// Soak carries on the soak of a verified rollout (config soak) that an
	// earlier run could not see through.
	Soak Action = "soak"
	Skip Action = "skip"
)

// Decision is the plan for one service, with the reason for it.
type Decision struct {
	Service    string `json:"service"`
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	Container  string `json:"container,omitempty"`
	Policy     string `json:"imagePolicy"`
	Action     Action `json:"action"`
	Current    string `json:"current,omitempty"`
	Target     string `json:"target,omitempty"`
	Reason     string `json:"reason"`
	// Problem marks a skip that needs fixing (a missing object, an invalid
	// image), as opposed to a deliberate one (held, paused, known bad);
	// Fix says how.
	Problem bool   `json:"problem,omitempty"`
	Fix     string `json:"fix,omitempty"`
	// Held marks a service skipped because of `autodeploy hold` or a
	// manual rollback.
	Held bool `json:"held,omitempty"`
	// OutsideWindow marks a deploy not started because no deploy window
	// (config deployWindows) is open long enough for it.
	OutsideWindow bool `json:"outsideWindow,omitempty"`
	// WindowIgnored marks a deploy outside the windows by run
	// --ignore-windows.
	WindowIgnored bool `json:"windowIgnored,omitempty"`
	// HoldExpired: the service's hold has an end (hold --for, --until)
	// that has passed; the plan is the one without it, and the run
	// removes the hold.
	HoldExpired bool `json:"holdExpired,omitempty"`
	// Ahead marks a skipped downgrade: the Deployment runs an image newer
	// than the one the policy selects.
	Ahead bool `json:"ahead,omitempty"`
	// PreviousRevision is where a rollback of this deploy or verify goes.
	PreviousRevision int64 `json:"-"`
	// StaleMarks: the Deployment carries an unverified mark for an image it
	// no longer runs (someone changed it after an interrupted run); the run
	// clears it.
	StaleMarks bool `json:"-"`
	// NoRollback: a verify of a rollout that is not autodeploy's (Flux or
	// a person applied the image again): a failure is recorded, not undone.
	NoRollback bool `json:"-"`
	// Kustomization is namespace/name of the Flux Kustomization that
	// applies the Deployment from git, "" when none does.
	Kustomization string `json:"kustomization,omitempty"`
	// PromotedFrom is the service a promoted service takes its image
	// from (config promote.from), "" for a service with an ImagePolicy.
	PromotedFrom string `json:"promotedFrom,omitempty"`
	// PromotedBy and PromoteReason are who asked for the promotion and why
	// (autodeploy promote); "" for a scheduled one.
	PromotedBy    string `json:"promotedBy,omitempty"`
	PromoteReason string `json:"promoteReason,omitempty"`
	// Repository is namespace/name of the policy's ImageRepository.
	Repository string `json:"imageRepository,omitempty"`
	// PromotionPolicy is namespace/name of the ImagePolicy autodeploy
	// owns for a promoted service Flux applies from git (config
	// promote.imagePolicy): a deploy points it at the target's tag first,
	// so that the automation writes that tag to git, and a rollback points
	// it back (gitops.PointPolicy). "" otherwise.
	PromotionPolicy string `json:"promotionPolicy,omitempty"`
	// Alert is a key for a problem people must hear about once (every
	// Problem: a missing object, an invalid image, a failed image running,
	// a deploy Flux reverted): the same from run to run while the problem
	// lasts, "" when there is none.
	Alert string `json:"-"`
}

// AlertDeploymentMissing begins the Alert of a service whose Deployment
// does not exist: there is no Deployment to record it on (AnnAlerted), so
// whoever must say it once keeps the record itself (the CLI's cron line).
const AlertDeploymentMissing = "deployment-missing:"

// AlertOutsideWindow begins the Alert of a deploy a deploy window holds
// back: news to tell once (notify.OutsideWindow), not a problem.
const AlertOutsideWindow = "outside-window:"

// Input is everything Plan looks at for one service.
type Input struct {
	Service config.Service
	// Deployment is nil when it does not exist.
	Deployment *appsv1.Deployment
	// ReplicaSets are the ones the Deployment owns (any order).
	ReplicaSets []*appsv1.ReplicaSet
	// Policy is nil when it does not exist.
	Policy *flux.Policy
	// Now is the time of the plan: a registry failure is retried only after
	// its backoff (AnnRetry).
	Now time.Time
	// IgnoreWindows: run --ignore-windows, an emergency deploy outside
	// the service's deploy windows.
	IgnoreWindows bool
	// Source is the service a promoted service (config promote) takes its
	// image from, with its Deployment (nil when it does not exist).
	Source *Source
	// PromoteNow is `autodeploy promote` for this service.
	PromoteNow *PromoteNow
	// Owned is the ImagePolicy at the name a promoted service applied
	// from git owns (config promote.imagePolicy), nil when it does not
	// exist (or was not read: the first promotion creates it).
	Owned *OwnedPolicy
}

// OwnedPolicy is the ImagePolicy at a promoted service's owned name.
type OwnedPolicy struct {
	Policy flux.Policy
	// Ours: it carries autodeploy's record for the service
	// (gitops.OwnedBy); one without is someone else's, never written.
	Ours bool
}

// Source is the source of a promotion as read from the cluster.
type Source struct {
	Service    config.Service
	Deployment *appsv1.Deployment
}

// Plan decides what to do with one service. It is a pure function of the
// objects read from the cluster: this is where `run` compares the
// Deployment's image with the ImagePolicy's.
func Plan(in Input) Decision {
	dec := plan(in)
	// A Deployment running the image remembered as failed is a problem
	// unless the run is about to replace it: whatever kept the policy's
	// image back (a refused downgrade, a pending retry...), saying so
	// quietly would hide a bad image (runningFailed).
	if d := in.Deployment; d != nil && dec.Action == Skip && !dec.Problem {
		if f, ok := ParseFailedImage(d.Annotations); ok && image.SameString(f.Image, dec.Current) {
			why := dec.Reason
			bad, _ := runningFailed(in, &dec, f, Ours(d, dec.Container).Writer, true)
			bad.Reason += "; the policy's image is not deployed: " + why
			return bad
		}
	}
	return dec
}

func plan(in Input) Decision {
	s := in.Service
	dec := Decision{
		Service: s.Name, Namespace: s.Namespace, Deployment: s.Deployment, Container: s.Container,
		Policy: s.PolicyNamespace + "/" + s.PolicyName,
	}
	if s.Promote != nil {
		dec.Policy, dec.PromotedFrom = "", s.Promote.From
	}
	skip := func(problem bool, format string, args ...any) Decision {
		dec.Action, dec.Problem, dec.Reason = Skip, problem, fmt.Sprintf(format, args...)
		if problem && dec.Alert == "" {
			// These reasons name the objects and nothing that changes
			// from run to run: the reason is the problem's key.
			dec.Alert = "problem:" + dec.Reason
		}
		return dec
	}
	d := in.Deployment
	if d == nil {
		dec.Fix = "fix namespace/deployment of the service in the config, or create the Deployment"
		dec.Alert = AlertDeploymentMissing + s.Namespace + "/" + s.Deployment
		return skip(true, "Deployment %s/%s not found", s.Namespace, s.Deployment)
	}
	container, err := resolveContainer(d, s.Container)
	if err != nil {
		dec.Fix = "set container of the service in the config"
		return skip(true, "%v", err)
	}
	dec.Container = container
	dec.Current, _ = rollout.ContainerImage(&d.Spec.Template, container)
	dec.Kustomization = gitops.KustomizationOf(d)
	if p := in.Policy; p != nil && p.RepoName != "" {
		dec.Repository = p.RepoNamespace + "/" + p.RepoName
	}
	ann := d.Annotations
	// Whose rollout this is (ours.go:Ours). Read once and only when a
	// decision needs it: decoding managedFields is the costliest part of a
	// plan.
	own := sync.OnceValue(func() Ownership { return Ours(d, container) })
	if f, ok := ParseFailedImage(ann); ok && image.SameString(f.Image, dec.Current) {
		if bad, stop := runningFailed(in, &dec, f, own().Writer, false); stop {
			return bad
		}
	}
	h, held, expired := heldAt(ann, in.Now)
	dec.HoldExpired = expired
	if held {
		dec.Held = true
		return skip(false, "held%s: %s (autodeploy resume %s)", holdBy(h, in.Now), h.Reason, s.Name)
	}
	if d.Spec.Paused {
		return skip(false, "Deployment is paused (kubectl rollout resume deployment/%s -n %s)", d.Name, d.Namespace)
	}
	if ann[AnnVerified] == "false" {
		// The mark counts only while autodeploy's own patch is the
		// template: kubectl rollout undo copies a ReplicaSet's annotations
		// back, marks of an old rollout included.
		if own().Ours() {
			if rt, ok := ParseRetry(ann); ok && image.SameString(rt.Image, dec.Current) && in.Now.Before(rt.After) {
				// The registry (or a Secret) failed it and no rollback was
				// possible: verified again once the backoff has passed.
				dec.Target = dec.Current
				return skip(false, "%s is verified again after %s: the last try failed because of %s (%s)", dec.Current, rt.After.UTC().Format("2006-01-02 15:04:05"), rollout.Cause(rt.Cause).Who(), truncate(rt.Reason, 160))
			}
			dec.Action, dec.Target = Verify, dec.Current
			dec.PreviousRevision, _ = strconv.ParseInt(ann[AnnPreviousRevision], 10, 64)
			dec.Reason = "an earlier run set this image and did not verify it"
			return dec
		}
		dec.StaleMarks = true
	}
	if m, ok := ParseSoak(ann); ok && !m.Passed && ann[AnnVerified] == "true" && image.SameString(m.Image, dec.Current) {
		// Before the policy: a newer image waits for the verdict on this
		// one (a crash now is remembered; deploying over it would forget
		// it). A soak whose end has passed is looked at once more: the
		// pods keep what happened meanwhile.
		dec.Action, dec.Target = Soak, dec.Current
		dec.PreviousRevision, _ = strconv.ParseInt(ann[AnnPreviousRevision], 10, 64)
		dec.NoRollback = dec.PreviousRevision == 0
		if left := m.Until.Sub(in.Now); left > 0 {
			dec.Reason = fmt.Sprintf("soaking since %s, %s left", m.VerifiedAt.UTC().Format("2006-01-02 15:04:05"), left.Round(time.Second))
		} else {
			dec.Reason = "the soak has ended: a last look at its pods"
		}
		return dec
	}
	p := in.Policy
	// The policy git's setter marker names: the service's, or for a
	// promotion under GitOps the one autodeploy owns.
	markerNS, markerName := s.PolicyNamespace, s.PolicyName
	if s.Promote != nil {
		if dec.Kustomization != "" {
			// Flux applies git's image at every interval: the promotion
			// must reach git, through the ImagePolicy autodeploy owns for
			// the service, which the image line's setter marker names
			// (gitops.PointPolicy). One of that name without autodeploy's
			// record is someone else's: never written, said.
			owned := flux.Ref{Namespace: s.Promote.PolicyNamespace, Name: s.Promote.PolicyName}
			markerNS, markerName = owned.Namespace, owned.Name
			dec.PromotionPolicy = owned.String()
			if o := in.Owned; o != nil && !o.Ours {
				dec.Fix = gitops.ForeignPolicyFix(s.Name, owned)
				return skip(true, "ImagePolicy %s %s: the promotion of %s under GitOps needs an ImagePolicy of that name created by autodeploy (label %s: %s, annotation %s: %s)",
					owned, gitops.ErrForeignPolicy, s.Name, gitops.LabelManagedBy, gitops.ManagedByAutodeploy, gitops.AnnPromotionOf, s.Name)
			}
		}
		var why string
		if p, why = promotion(in, dec.Current); p == nil {
			return skip(false, "%s", why)
		}
	}
	if p == nil {
		dec.Fix = FixPolicyNotFound
		return skip(true, "ImagePolicy %s not found", dec.Policy)
	}
	if p.Latest == "" {
		return skip(false, "ImagePolicy %s has no image yet: %s", dec.Policy, p.Message)
	}
	if !p.Ready {
		return skip(false, "ImagePolicy %s is not Ready: %s", dec.Policy, p.Message)
	}
	dec.Target = p.Latest
	cur, err := image.Parse(dec.Current)
	if err != nil {
		dec.Fix = "fix the Deployment's image reference"
		return skip(true, "current image: %v", err)
	}
	want, err := image.Parse(p.Latest)
	if err != nil {
		dec.Fix = "fix the ImageRepository's image or the policy's filterTags so that it selects a valid reference"
		return skip(true, "ImagePolicy %s: %v", dec.Policy, err)
	}
	if image.Satisfies(cur, want) {
		if rt, ok := ParseRetry(ann); ok && image.SameString(rt.Image, dec.Current) {
			return retriedRunning(in, dec, rt, own())
		}
		dec.Action, dec.Reason = UpToDate, "running the policy's latest image"
		return dec
	}
	if k := dec.Kustomization; k != "" && image.SameString(own().Deployed, p.Latest) && own().Writer == flux.KustomizeManager {
		// autodeploy deployed this image, and Flux applied git's image over
		// it: git is behind the policy (the automation is suspended, its
		// push refused, or the manifest has no setter marker). Deploying
		// again would flip the Deployment at every reconcile. Checked
		// before the downgrade rules: git's template may differ in other
		// ways too, and then autodeploy's revision looks replaced.
		kref := flux.ParseRef(k)
		dec.Alert = "reverted:" + p.Latest
		dec.Fix = fmt.Sprintf("make git follow ImagePolicy %s/%s (flux get image update -n %s; the image line needs the marker # {\"$imagepolicy\": \"%s:%s\"}), then flux reconcile kustomization %s -n %s --with-source",
			markerNS, markerName, markerNS, markerNS, markerName, kref.Name, kref.Namespace)
		return skip(true, "%s was reverted by %s from Kustomization %s: git has %s; runs do not deploy %s again until git has it",
			p.Latest, flux.KustomizeManager, k, dec.Current, p.Latest)
	}
	if cur.Name() != want.Name() {
		// Not a refusal: moving registries or repositories is legitimate,
		// but the operator should see it in the plan.
		dec.Reason = fmt.Sprintf("repository changes from %s to %s; ", cur.Name(), want.Name())
	}
	if f, ok := ParseFailedImage(ann); ok && image.SameString(f.Image, p.Latest) && !(in.PromoteNow != nil && in.PromoteNow.Force) {
		if in.PromoteNow != nil {
			return skip(false, "not promoted: %s failed here %s; autodeploy promote --force promotes it anyway", p.Latest, f.When())
		}
		return skip(false, "%s failed %s; waiting for the policy to select another image", p.Latest, f.When())
	}
	if rt, ok := ParseRetry(ann); ok && image.SameString(rt.Image, p.Latest) && in.Now.Before(rt.After) {
		return skip(false, "the last try of %s failed because of %s (%s); trying again after %s", p.Latest, rollout.Cause(rt.Cause).Who(), truncate(rt.Reason, 120), rt.After.UTC().Format("2006-01-02 15:04:05"))
	}
	if rev, ok := replacedBefore(d, in.ReplicaSets, container, want); ok {
		dec.Ahead = true
		return skip(false, "downgrade refused: revision %d already ran %s and was replaced (alphabetical order of sha-<hex> tags is not build order, fluxcd/flux2#3449)", rev, p.Latest)
	}
	if rev, ok := rolledBackFrom(d, in.ReplicaSets, container, want); ok {
		// kubectl rollout undo (or kubectl set image to an older image):
		// someone chose the revision before this image. Deploying it
		// again would fight them every run.
		if by := own().By(); by != "" {
			return skip(false, "%s (revision %d) was rolled back by %s: runs do not deploy it again; deploy a newer image, or set it by hand (kubectl set image)", p.Latest, rev, by)
		}
	}
	if why := outsideWindow(in); why != "" {
		if !in.IgnoreWindows {
			dec.OutsideWindow = true
			// Told once per image held back (alert), not at every run
			// until the window opens.
			dec.Alert = AlertOutsideWindow + p.Latest
			return skip(false, "%s%s", dec.Reason, why)
		}
		dec.WindowIgnored = true
		dec.Reason += why + ", deployed anyway (--ignore-windows); "
	}
	dec.Action = Deploy
	switch pn := in.PromoteNow; {
	case pn != nil:
		dec.PromotedBy, dec.PromoteReason = pn.By, pn.Reason
		dec.Reason += fmt.Sprintf("promoted from %s by %s (autodeploy promote): %s", dec.PromotedFrom, pn.By, pn.Reason)
	case dec.PromotedFrom != "":
		dec.Reason += "promoted from " + dec.PromotedFrom + ", where it was verified"
	default:
		dec.Reason += "the policy selected a new image"
	}
	// The revision live now is where a rollback of this deploy goes: the
	// current ReplicaSet's, which is the Deployment's own annotation unless
	// the controller has not caught up yet.
	dec.PreviousRevision = rollout.Revision(d)
	if cur := rollout.Current(d, in.ReplicaSets); cur != nil {
		dec.PreviousRevision = rollout.Revision(cur)
	}
	return dec
}

// promotion is what a promoted service takes now, as the policy it stands
// for: the exact image its source runs, verified there by autodeploy with
// its soak passed, at least promote.after since the verification; nil and
// why when there is none yet. An image the source rolled back is not
// verified there any more; one it remembers as failed was never verified.
// current is what the service runs: already running the source's image
// is up to date whatever the wait.
func promotion(in Input, current string) (*flux.Policy, string) {
	pr := in.Service.Promote
	src := in.Source
	if src == nil || src.Deployment == nil {
		return nil, fmt.Sprintf("nothing to promote: the Deployment of %s (promote.from) does not exist", pr.From)
	}
	d := src.Deployment
	c, err := resolveContainer(d, src.Service.Container)
	if err != nil {
		return nil, fmt.Sprintf("nothing to promote from %s: %v", pr.From, err)
	}
	img, _ := rollout.ContainerImage(&d.Spec.Template, c)
	now := in.PromoteNow
	if now != nil && now.Image != "" {
		img = now.Image // a person's choice: the target's checks judge it
	}
	p := &flux.Policy{Latest: img, Ready: true}
	if image.SameString(img, current) {
		return p, ""
	}
	m, ok := ParseSoak(d.Annotations)
	f, failed := ParseFailedImage(d.Annotations)
	switch {
	case failed && image.SameString(f.Image, img) && !(now != nil && now.Force):
		if now != nil {
			return nil, fmt.Sprintf("not promoted: %s failed in %s (%s); autodeploy promote --force promotes it anyway", img, pr.From, truncate(f.Reason, 120))
		}
		return nil, fmt.Sprintf("nothing to promote: %s runs %s, which failed there", pr.From, img)
	case now != nil && now.Image != "":
		return p, ""
	case failed && image.SameString(f.Image, img):
		return nil, fmt.Sprintf("nothing to promote: %s runs %s, which failed there", pr.From, img)
	case d.Annotations[AnnVerified] != "true" || !ok || !image.SameString(m.Image, img):
		return nil, fmt.Sprintf("nothing to promote: %s runs %s, not verified there by autodeploy (yet)", pr.From, img)
	case !m.Passed:
		return nil, fmt.Sprintf("%s is soaking in %s until %s; promoted after that", img, pr.From, m.Until.UTC().Format("2006-01-02 15:04:05"))
	}
	if at := m.VerifiedAt.Add(pr.After); in.Now.Before(at) && now == nil {
		return nil, fmt.Sprintf("%s is promoted from %s at %s (promote.after %s since its verification there)", img, pr.From, at.UTC().Format("2006-01-02 15:04:05"), pr.After)
	}
	return p, ""
}

// runningFailed judges a Deployment that runs the image autodeploy
// remembers as failed: a problem whoever applied it (an automatic rollback
// that could not be applied, auto-rollback off, Flux applying git's tag, a
// person), reported with who did it. stop is false only when the run may
// fix it by deploying the policy's other image: the image was not applied
// from git (that would fight Flux) and the service is neither held nor
// paused; Plan comes back here (force) if that deploy does not happen.
func runningFailed(in Input, dec *Decision, f FailedImage, writer string, force bool) (Decision, bool) {
	d, s, p := in.Deployment, in.Service, in.Policy
	_, held, _ := heldAt(d.Annotations, in.Now)
	fromGit := dec.Kustomization != "" && writer == flux.KustomizeManager
	if !force && p != nil && p.Ready && p.Latest != "" && !image.SameString(p.Latest, dec.Current) && !fromGit && !held && !d.Spec.Paused {
		return *dec, false
	}
	by := ""
	switch {
	case fromGit:
		by = fmt.Sprintf("; applied by %s from Kustomization %s (git has it)", writer, dec.Kustomization)
	case f.RollbackError != "":
		by = "; the rollback could not be applied: " + truncate(f.RollbackError, 160)
	case writer == rollout.FieldManager, writer == "" && !s.AutoRollback:
		by = "; auto-rollback is off"
	case writer != "":
		by = "; set by " + writer
	}
	dec.Action, dec.Problem, dec.Alert = Skip, true, "failed-image:"+f.Image
	dec.Reason = fmt.Sprintf("runs %s, which failed %s (%s)%s", dec.Current, f.When(), truncate(f.Reason, 120), by)
	switch {
	case fromGit && p != nil && p.Latest != "" && !image.SameString(p.Latest, dec.Current):
		dec.Reason += fmt.Sprintf("; the policy now selects %s: once the ImageUpdateAutomation writes it to git, Flux applies it", p.Latest)
		dec.Fix = fmt.Sprintf("flux get image update -n %s; then flux reconcile kustomization %s -n %s --with-source", s.PolicyNamespace, flux.ParseRef(dec.Kustomization).Name, flux.ParseRef(dec.Kustomization).Namespace)
	case held || f.RollbackError != "":
		dec.Fix = fmt.Sprintf("roll back by hand: autodeploy rollback %s --to-revision N (autodeploy history %s)", s.Name, s.Name)
		if held {
			dec.Reason += " while held"
		}
	default:
		dec.Fix = fmt.Sprintf("roll back by hand: autodeploy rollback %s (autodeploy history %s)", s.Name, s.Name)
	}
	return *dec, true
}

// retriedRunning judges a Deployment that runs, again, the image whose
// last rollout autodeploy rolled back for a passing cause (AnnRetry):
// Flux applied it from git after the rollback, or a person set it. It is
// not autodeploy's rollout to undo (NoRollback), and it may be failing
// still: once its rollout completed, or its backoff passed, the run
// verifies it (which clears the retry mark, or renews it); until then it
// is a problem, never "up to date" over pods in ImagePullBackOff (issue
// 17, item 4).
func retriedRunning(in Input, dec Decision, rt Retry, own Ownership) Decision {
	by := ""
	if w := own.By(); w != "" {
		by = " (set by " + w + ")"
		if k := dec.Kustomization; k != "" && w == flux.KustomizeManager {
			by = fmt.Sprintf(" (applied by %s from Kustomization %s)", w, k)
		}
	}
	if rollout.Evaluate(in.Deployment).State == rollout.Complete || !in.Now.Before(rt.After) {
		dec.Action, dec.Target, dec.NoRollback = Verify, dec.Current, true
		dec.Reason = fmt.Sprintf("runs %s again%s, whose last try failed because of %s: verifying it", dec.Current, by, rollout.Cause(rt.Cause).Who())
		return dec
	}
	dec.Action, dec.Problem, dec.Target = Skip, true, dec.Current
	dec.Alert = "retry-running:" + rt.Image
	dec.Reason = fmt.Sprintf("runs %s%s, whose last try failed because of %s (%s); verified again after %s",
		dec.Current, by, rollout.Cause(rt.Cause).Who(), truncate(rt.Reason, 120), rt.After.UTC().Format("2006-01-02 15:04:05"))
	dec.Fix = fmt.Sprintf("fix the cause (kubectl describe pods -n %s -l <the Deployment's selector>); the run after %s verifies it", in.Service.Namespace, rt.After.UTC().Format("15:04:05"))
	return dec
}

// FixPolicyNotFound is the fix of a service whose ImagePolicy is missing.
const FixPolicyNotFound = "fix imagePolicy of the service in the config, or create the ImagePolicy"

func holdBy(h Hold, now time.Time) string {
	var parts []string
	if h.By != "" {
		parts = append(parts, "by "+h.By)
	}
	if !h.At.IsZero() {
		parts = append(parts, "since "+h.At.UTC().Format("2006-01-02 15:04"))
	}
	if !h.Until.IsZero() {
		parts = append(parts, fmt.Sprintf("until %s (in %s)", h.Until.UTC().Format("2006-01-02 15:04 UTC"), ui.Age(h.Until.Sub(now))))
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " ")
}

// rolledBackFrom reports whether want ran in a ReplicaSet first rolled out
// after the current one: the current template is an older one restored
// over it (a rollback).
func rolledBackFrom(d *appsv1.Deployment, rss []*appsv1.ReplicaSet, container string, want image.Ref) (int64, bool) {
	cur := rollout.Current(d, rss)
	if cur == nil {
		return 0, false
	}
	curFirst := rollout.FirstRevision(cur)
	for _, rs := range rss {
		if rs == cur || rollout.FirstRevision(rs) <= curFirst {
			continue
		}
		img, _ := rollout.ContainerImage(&rs.Spec.Template, container)
		if r, err := image.Parse(img); err == nil && image.Satisfies(r, want) {
			return rollout.Revision(rs), true
		}
	}
	return 0, false
}

// resolveContainer applies the config's rule: a named container must exist;
// no name means the only container.
func resolveContainer(d *appsv1.Deployment, name string) (string, error) {
	cs := d.Spec.Template.Spec.Containers
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Name
		if c.Name == name {
			return name, nil
		}
	}
	if name != "" {
		return "", fmt.Errorf("Deployment %s/%s has no container %q (it has %s)", d.Namespace, d.Name, name, strings.Join(names, ", "))
	}
	if len(cs) != 1 {
		return "", fmt.Errorf("Deployment %s/%s has %d containers (%s): set container in the config", d.Namespace, d.Name, len(cs), strings.Join(names, ", "))
	}
	return cs[0].Name, nil
}

// replacedBefore reports whether want ran in a ReplicaSet that was first
// rolled out before the current one, i.e. it was deployed and then replaced
// by a later image. The order is by first revision: a rollback gives an old
// ReplicaSet a new revision (keeping the old ones in revision-history), and
// the image rolled back from must stay deployable once the operator resumes
// the service.
func replacedBefore(d *appsv1.Deployment, rss []*appsv1.ReplicaSet, container string, want image.Ref) (int64, bool) {
	// The Deployment's own template is the newest: when the controller has
	// not created its ReplicaSet yet (a change a moment ago), every
	// ReplicaSet is older than it.
	cur := rollout.Current(d, rss)
	curFirst := int64(math.MaxInt64)
	if cur != nil {
		curFirst = rollout.FirstRevision(cur)
	}
	for _, rs := range rss {
		if rs == cur || rollout.FirstRevision(rs) >= curFirst {
			continue
		}
		img, ok := rollout.ContainerImage(&rs.Spec.Template, container)
		if !ok {
			continue
		}
		// Satisfies, not Same: a ReplicaSet on the bare tag did not run a
		// new build of it pinned by digest.
		if r, err := image.Parse(img); err == nil && image.Satisfies(r, want) {
			return rollout.Revision(rs), true
		}
	}
	return 0, false
}

// outsideWindow says why a rollout of in's service may not start at
// in.Now under its deploy windows ("" when it may): it must be able to end
// (rolloutTimeout) inside an open window. Only deploys ask: a verify or a
// rollback is never held back by a window.
func outsideWindow(in Input) string {
	s := in.Service
	v := config.CanStart(s.DeployWindows, in.Now, s.RolloutTimeout+s.Soak)
	if v.Allowed {
		return ""
	}
	why := "outside its deploy window"
	if v.Open {
		why += fmt.Sprintf(" (a rollout of up to %s would end after it closes)", s.RolloutTimeout)
	}
	if v.Next.IsZero() {
		return why + ", and no window opens again"
	}
	return why + ", next opens " + config.FormatWindowTime(v.Next, in.Now, v.Window)
}
