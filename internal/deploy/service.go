package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// One service's path through a run, top to bottom: act reads the service
// again and plans (Plan), execute patches and waits (waitAndCheck), judges
// the wait (judge, a typed verdict in one switch), and acts on the verdict
// where it is made: verified, left unverified, superseded, or failed, which
// recover hands to the rollback (rollback.go). Where images are compared:
// plan.go:plan. Where a rollout is judged autodeploy's own: ours.go:Ours,
// from the Deployment before the patch; once this run patched, "ours" is
// the template the patch produced (rollout.Wait's Template, markVerified),
// compared by identity, since the marks are already the run's own.

// maxReplans bounds how often a service is read and planned again because
// its Deployment changed between the read and the patch. act's loop stays
// hand-written: it is a re-plan, not a retry of one write (each pass may
// decide something else: a hold placed, a new image, nothing to do), and
// it returns the pass's Decision and Outcome, which retry.OnError's
// error-only callback does not carry.
const maxReplans = 5

// act reads the service's objects again right before acting on them (the
// snapshot decision only says there may be something to do), plans from
// that present state (a hold placed or an image set since the run's
// snapshot counts), and carries the plan out. A patch refused because the
// Deployment changed since the read is not a failure: read again, plan
// again.
func (r *Runner) act(ctx context.Context, snapshot Decision, s config.Service, api flux.API, log *slog.Logger) (Decision, Outcome, error) {
	for attempt := 1; ; attempt++ {
		in, err := r.readService(ctx, api, s)
		if err != nil {
			log.Error("read failed: nothing changed", "error", err)
			return snapshot, OutcomeNotRun, err
		}
		dec := preflight(Plan(in), s)
		log.Info("plan", "action", dec.Action, "current", dec.Current, "target", dec.Target, "reason", dec.Reason)
		if dec.WindowIgnored && dec.Action == Deploy {
			log.Warn("deploying outside the deploy window (--ignore-windows)", "target", dec.Target)
		}
		if dec.StaleMarks {
			// Flux put git's image over an interrupted rollout: the
			// deployed-image mark stays, as after a superseded one (Plan
			// reports the revert).
			err := r.clearMarks(ctx, in.Deployment, Ours(in.Deployment, dec.Container).Writer == flux.KustomizeManager)
			if apierrors.IsConflict(err) && attempt < maxReplans {
				continue
			}
			if err != nil {
				log.Warn("could not clear a stale unverified mark", "error", err)
			} else {
				log.Info("cleared an unverified mark for an image the Deployment no longer runs", "image", in.Deployment.Annotations[AnnDeployedImage])
				if attempt < maxReplans {
					continue // the Deployment read is stale now
				}
			}
		}
		switch {
		case dec.Action == UpToDate:
			return dec, OutcomeUpToDate, nil
		case dec.Action == Skip:
			return dec, r.skipped(dec, log), nil
		case dec.Action == Soak:
			m, _ := ParseSoak(in.Deployment.Annotations)
			r.soaks = append(r.soaks, pendingSoak{s: s, dec: dec, mark: m, log: log})
			return dec, OutcomeSoaking, nil
		case r.rolloutsSpent():
			err := fmt.Errorf("the run's budget (runTimeout %s) was spent before this service's turn", r.Config.RunTimeout)
			log.Error("not run", "reason", err)
			return dec, OutcomeNotRun, err
		}
		out, err := r.execute(ctx, in, dec, log)
		if errors.Is(err, errChanged) && attempt < maxReplans {
			log.Info("the Deployment changed since it was read: planning again")
			continue
		}
		return dec, out, err
	}
}

// skipped reports a skip: a problem (exit 7) is logged as a warning, the
// log line status reads back as a failing run.
func (r *Runner) skipped(dec Decision, log *slog.Logger) Outcome {
	if dec.Problem {
		log.Warn("skipped", "reason", dec.Reason)
	}
	r.progress(dec.Service, "skipped: "+dec.Reason)
	return OutcomeSkipped
}

// errChanged: a conditional patch found the Deployment changed since it
// was read.
var errChanged = errors.New("the Deployment changed since it was read")

// execute deploys or verifies one service, rolling back on failure. It
// judges only its own revision: the template its patch produced (or, for a
// verify, the one it finds). If someone changes the template meanwhile,
// the service ends superseded, and their change is left alone.
func (r *Runner) execute(ctx context.Context, in Input, dec Decision, log *slog.Logger) (Outcome, error) {
	d, s := in.Deployment, in.Service
	// before is the template live just before the patch: where a failed
	// deploy goes back to. A verify only knows the revision.
	var (
		before *corev1.PodTemplateSpec
		git    *alongside // bringing git along, under GitOps
	)
	if dec.Action == Deploy {
		cause := deployCause(dec)
		ann := map[string]string{
			AnnDeployedImage:              dec.Target,
			AnnVerified:                   "false",
			AnnPreviousRevision:           fmt.Sprint(dec.PreviousRevision),
			AnnSoak:                       "", // an earlier image's
			AnnSoakBefore:                 soakBefore(d.Annotations, dec.Current),
			rollout.ChangeCauseAnnotation: cause,
			AnnPromotion:                  "", // an earlier promotion's
		}
		if dec.PromotedFrom != "" {
			ann[AnnPromotion] = mustJSON(Promotion{From: dec.PromotedFrom, Image: dec.Target, At: r.Now().UTC(), By: dec.PromotedBy, Reason: dec.PromoteReason})
		}
		if dec.PromotionPolicy != "" {
			if err := r.promote(ctx, s, dec, log); err != nil {
				r.progress(s.Name, err.Error())
				return OutcomeFailed, err
			}
		}
		log.Info("rollout started", "from", dec.Current, "to", dec.Target, "revision", dec.PreviousRevision)
		r.progress(s.Name, fmt.Sprintf("deploying %s -> %s", dec.Current, dec.Target))
		patched, err := rollout.SetImage(ctx, r.Kube, d, dec.Container, dec.Target, ann, false)
		if apierrors.IsConflict(err) {
			return OutcomeNotRun, fmt.Errorf("%w: %v", errChanged, err)
		}
		if err != nil && rollout.Transient(err) {
			// A timeout or a connection cut after the request was sent: the
			// server may have applied it. The marks travel with the patch,
			// so the next run finds either nothing changed or an unverified
			// rollout, and verifies it.
			log.Error("patch outcome unknown: the next run reads the Deployment and verifies what it finds", "error", err)
			return OutcomeUnverified, fmt.Errorf("the patch's outcome is unknown (%w): the next run verifies what the Deployment runs", err)
		}
		if err != nil {
			log.Error("patch refused: nothing changed", "error", err)
			return OutcomeFailed, err
		}
		before, d = d.Spec.Template.DeepCopy(), patched
		r.notePatched(s.Name, r.Now())
		if dec.Kustomization != "" {
			// Git follows alongside the rollout: bringGitAlong. A verified
			// rollout lets it finish (the automation may commit after a
			// rollout that completed at once); any other end stops it: a
			// rollback brings git back instead.
			git = startAlongside(ctx, func(ctx context.Context) { r.bringGitAlong(ctx, in, dec, log) })
		}
	} else {
		log.Info("verifying an earlier rollout", "image", dec.Current)
		r.progress(s.Name, "verifying "+dec.Current+" (left unverified by an earlier run)")
	}
	ours := d.Spec.Template.DeepCopy()

	err := r.waitAndCheck(s, dec, ours, log)
	// The rollout and its health check passed now: the soak counts from
	// here, not from after git followed. Dated after the wait for git (up
	// to gitops.FollowBound), a crash in between escaped both the rollout
	// and the soak (TestPromotionUnderGitOps on 1.28/kine: a late-crash-*
	// build promoted, its restart ~5 s after Ready not seen).
	verifiedAt := r.Now().UTC()
	if err == nil {
		git.Wait() // bounded by gitops.FollowBound
	} else {
		git.Stop()
	}
	switch judge(ctx.Err() != nil, err) {
	case verdictInterrupted:
		log.Warn("interrupted while waiting: left unverified for the next run", "image", dec.Target)
		return OutcomeInterrupted, ctx.Err()
	case verdictVerified:
		// Every verification is dated (a promotion counts from it); a soak
		// starts there.
		soak := &SoakMark{Image: dec.Target, VerifiedAt: verifiedAt, Until: verifiedAt.Add(s.Soak), Passed: s.Soak == 0}
		if err := r.markVerified(ctx, s, ours, *soak); err != nil {
			log.Warn("could not mark as verified; the next run verifies again", "error", err)
			soak = nil
		}
		if soak != nil && soak.Passed {
			soak = nil // nothing to watch
		}
		r.releaseExclusions(ctx, in, dec, log)
		out := OutcomeDeployed
		if dec.Action == Verify {
			out = OutcomeVerified
		}
		if soak == nil {
			return out, nil
		}
		// The soak is watched once every service had its turn
		// (finishSoaks): a failure is this deploy's, rolled back to
		// before.
		r.soaks = append(r.soaks, pendingSoak{s: s, dec: dec, mark: *soak, before: before, log: log})
		return out, nil
	case verdictSuperseded:
		var sup *rollout.SupersededError
		errors.As(err, &sup)
		return r.superseded(ctx, s, dec, sup, log)
	case verdictDeleted:
		// Someone deleted the Deployment: no verdict on the image, nothing
		// to roll back (it was "rollback failed", exit 6). A missing
		// Deployment is a problem of the service (exit 7).
		log.Warn("the Deployment was deleted during the rollout: nothing to verify or roll back", "image", dec.Target)
		r.progress(s.Name, err.Error())
		return OutcomeNotRun, err
	case verdictPaused:
		// The rollout stays unverified; once resumed, the next run
		// verifies it (until then runs skip the paused Deployment).
		err = fmt.Errorf("%w during the rollout: left unverified (kubectl rollout resume deployment/%s -n %s, then the next run verifies it)", err, s.Deployment, s.Namespace)
		log.Warn("paused during the rollout: left unverified", "image", dec.Target, "error", err)
		r.progress(s.Name, err.Error())
		return OutcomeUnverified, err
	case verdictUnjudged:
		// No verdict, no rollback: the unverified mark makes the next run
		// verify it first.
		log.Warn("left unverified for the next run", "image", dec.Target, "error", err)
		r.progress(s.Name, "left unverified: "+err.Error())
		return OutcomeUnverified, err
	}
	// verdictFailed
	log.Error("rollout failed", "image", dec.Target, "error", err)
	r.progress(s.Name, "failed: "+err.Error())
	return r.recover(ctx, s, dec, before, ours, err, log)
}

// errBudget: the run's budget ran out during a rollout that had not failed.
var errBudget = errors.New("the run's budget ran out")

// superseded ends a service whose Deployment someone else changed during
// autodeploy's rollout: their change stands, autodeploy's marks go (they
// describe a rollout that is no longer the Deployment's), nothing is
// remembered as failed.
func (r *Runner) superseded(ctx context.Context, s config.Service, dec Decision, sup *rollout.SupersededError, log *slog.Logger) (Outcome, error) {
	if sup.Image != "" && image.SameString(sup.Image, dec.Target) {
		// Another change of the template (Flux applying an env var
		// committed in the same interval as the tag) that keeps this
		// run's image: the image is still autodeploy's to verify. The
		// marks stay, and the next run verifies the new template (issue
		// 17, item 13: the marks went, and no run verified the image).
		err := fmt.Errorf("the template was changed by %s during the rollout, with the same image %s: left unverified, the next run verifies it", supersededBy(sup), dec.Target)
		log.Warn("template changed during the rollout, same image: left unverified", "image", dec.Target, "by", sup.By)
		r.progress(s.Name, err.Error())
		return OutcomeUnverified, err
	}
	log.Warn("superseded: the Deployment was changed during the rollout; leaving it alone", "image", dec.Target, "by", sup.By, "now", sup.Image)
	r.progress(s.Name, sup.Error())
	// When Flux applied git over the rollout, the deployed-image mark
	// stays: it is how the next run knows its image was reverted, and does
	// not deploy it again (Plan).
	keepDeployed := sup.By == flux.KustomizeManager
	mark := rolloutMarks(keepDeployed)
	var cleared *appsv1.Deployment
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		// A read after a verdict: an API blip must not leave the marks of
		// a rollout that is no longer autodeploy's (issue 17).
		d, err := r.getRetried(ctx, s)
		if err != nil {
			return err
		}
		if c := d.Annotations[rollout.ChangeCauseAnnotation]; isDeployCause(c, dec.Target) {
			// The cause of autodeploy's patch would be copied onto their
			// revision's ReplicaSet, and `history` would show it for
			// their change (issue 18, item 10). The deployment controller
			// copies the new value onto the ReplicaSet too.
			mark[rollout.ChangeCauseAnnotation] = supersededCause(sup, dec.Target)
		}
		cleared, err = rollout.AnnotateIfUnchanged(ctx, r.Kube, d, mark)
		return err
	})
	if err == nil {
		// Their ReplicaSet is created from the Deployment with autodeploy's
		// marks on it, possibly after the patch above (seen on 1.28: the
		// ReplicaSet did not exist yet when the run looked, and came with
		// the marks), and the controller never removes a copied
		// annotation: an undo to their revision would bring the marks
		// back. Once the controller has synced the cleared Deployment
		// (annotations count in a Deployment's generation), their
		// ReplicaSet exists and gets no mark back.
		err = r.clearSupersededReplicaSet(ctx, cleared, mark)
	}
	if err != nil {
		log.Warn("could not clear autodeploy's marks", "error", err)
	}
	return OutcomeSuperseded, sup
}

// observeBound bounds the wait for the deployment controller to sync a
// Deployment autodeploy annotated: it does within milliseconds; a stopped
// controller must not hold the run.
const observeBound = 10 * time.Second

// clearSupersededReplicaSet removes mark from the ReplicaSet of d's
// template once the deployment controller has observed d.
func (r *Runner) clearSupersededReplicaSet(ctx context.Context, d *appsv1.Deployment, mark map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, observeBound)
	defer cancel()
	d, err := rollout.WaitObserved(ctx, r.Kube, d)
	if err != nil {
		return fmt.Errorf("the deployment controller has not synced Deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	owned, err := rollout.ListOwned(ctx, r.Kube, d)
	if err != nil {
		return err
	}
	if cur := rollout.Current(d, owned); cur != nil {
		return rollout.AnnotateReplicaSets(ctx, r.Kube, d, mark, cur.Name)
	}
	return nil
}

// clearMarks removes the marks of an autodeploy rollout from d.
func (r *Runner) clearMarks(ctx context.Context, d *appsv1.Deployment, keepDeployed bool) error {
	_, err := rollout.AnnotateIfUnchanged(ctx, r.Kube, d, rolloutMarks(keepDeployed))
	return err
}

// rolloutMarks is the patch that removes the marks of an autodeploy
// rollout; keepDeployed keeps the deployed-image mark (after Flux applied
// git over it: Plan reads it to report the revert).
func rolloutMarks(keepDeployed bool) map[string]string {
	mark := map[string]string{AnnVerified: "", AnnDeployedImage: "", AnnPreviousRevision: "", AnnSoak: "", AnnSoakBefore: ""}
	if keepDeployed {
		delete(mark, AnnDeployedImage)
	}
	return mark
}

// soakBefore is the AnnSoakBefore of a deploy over current: its passed soak
// mark while it is verified, "" (none) otherwise.
func soakBefore(ann map[string]string, current string) string {
	if m, ok := ParseSoak(ann); ok && m.Passed && ann[AnnVerified] == "true" && image.SameString(m.Image, current) {
		return ann[AnnSoak]
	}
	return ""
}

// deployCause is the change-cause of autodeploy's deploy patch.
func deployCause(dec Decision) string {
	if dec.PromotedFrom != "" && dec.PromotedBy != "" {
		return fmt.Sprintf("autodeploy: %s -> %s (promoted from %s by %s: %s)", dec.Current, dec.Target, dec.PromotedFrom, dec.PromotedBy, dec.PromoteReason)
	}
	if dec.PromotedFrom != "" {
		return fmt.Sprintf("autodeploy: %s -> %s (promoted from %s)", dec.Current, dec.Target, dec.PromotedFrom)
	}
	return fmt.Sprintf("autodeploy: %s -> %s (ImagePolicy %s)", dec.Current, dec.Target, dec.Policy)
}

// isDeployCause: c is the change-cause of an autodeploy deploy of target
// (this run's or, for a verify, an earlier one's).
func isDeployCause(c, target string) bool {
	return strings.HasPrefix(c, "autodeploy: ") && strings.Contains(c, "-> "+target+" ")
}

// supersededBy names who changed the template.
func supersededBy(sup *rollout.SupersededError) string {
	if sup.By == "" {
		return "someone else"
	}
	return sup.By
}

// supersededCause is the change-cause of a revision someone else made
// during autodeploy's rollout of target.
func supersededCause(sup *rollout.SupersededError, target string) string {
	by, img := supersededBy(sup), sup.Image
	if img == "" {
		img = "a new template"
	}
	return fmt.Sprintf("%s set %s (superseding autodeploy's rollout of %s)", by, img, target)
}

// markVerified sets verified=true, only while the Deployment still has the
// template that was verified, and forgets a pending retry of the image.
//
// The soak mark dates the verification; with a soak still to pass,
// previous-revision stays for the rollback a failed soak makes.
func (r *Runner) markVerified(ctx context.Context, s config.Service, ours *corev1.PodTemplateSpec, soak SoakMark) error {
	mark := map[string]string{AnnVerified: "true", AnnPreviousRevision: "", AnnRetry: "", AnnSoak: mustJSON(soak), AnnSoakBefore: ""}
	if !soak.Passed {
		delete(mark, AnnPreviousRevision)
		delete(mark, AnnSoakBefore)
	}
	return r.markTemplate(ctx, s, ours, mark)
}

// markTemplate writes mark, only while the Deployment still has the
// template ours. The write is conditional on the resourceVersion read: a
// conflict (the controller writing status) reads again and writes again.
func (r *Runner) markTemplate(ctx context.Context, s config.Service, ours *corev1.PodTemplateSpec, mark map[string]string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := r.getRetried(ctx, s)
		if err != nil {
			return err
		}
		if !rollout.EqualIgnoreHash(&d.Spec.Template, ours) {
			return fmt.Errorf("the Deployment's pod template is no longer the one autodeploy verified: someone else changed it")
		}
		_, err = rollout.AnnotateIfUnchanged(ctx, r.Kube, d, mark)
		return err
	})
}

// waitAndCheck waits for the rollout of ours with the service's timeout
// (within the run's budget), then runs its health check.
func (r *Runner) waitAndCheck(s config.Service, dec Decision, ours *corev1.PodTemplateSpec, log *slog.Logger) error {
	start := r.Now()
	wctx, cancel := r.rollout(s)
	defer cancel()
	last := ""
	d, err := rollout.Wait(wctx, r.Kube, s.Namespace, s.Deployment, rollout.WaitOptions{
		Template: ours, Container: dec.Container, Grace: r.Grace,
		Progress: func(msg string) {
			last = msg
			log.Debug("rollout", "status", msg)
			r.progress(s.Name, msg)
		},
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			if r.rolloutsSpent() {
				return fmt.Errorf("%w (runTimeout %s) before the rollout finished; last status: %s", errBudget, r.Config.RunTimeout, last)
			}
			// The error is Wait's verdict on what the pods showed.
			return fmt.Errorf("rollout did not finish within %s; last status: %s; %w", s.RolloutTimeout, last, err)
		}
		return err
	}
	log.Info("rollout complete", "image", dec.Target, "replicas", d.Status.AvailableReplicas, "duration", r.Now().Sub(start))
	if s.Health == nil {
		return nil
	}
	ref, _ := image.Parse(dec.Target)
	hstart := r.Now()
	if err := r.Health(r.checks(), *s.Health, dec.Target, ref.Tag); err != nil {
		if r.rolloutsSpent() {
			return fmt.Errorf("%w (runTimeout %s) during the health check: %v", errBudget, r.Config.RunTimeout, err)
		}
		log.Error("health check failed", "url", s.Health.ShownURL(), "error", err)
		return err
	}
	log.Info("health check passed", "url", s.Health.ShownURL(), "duration", r.Now().Sub(hstart))
	r.progress(s.Name, "health check passed")
	return nil
}

// get reads the service's Deployment.
func (r *Runner) get(ctx context.Context, s config.Service) (*appsv1.Deployment, error) {
	return r.Kube.AppsV1().Deployments(s.Namespace).Get(ctx, s.Deployment, metav1.GetOptions{})
}

// afterVerdict is the backoff of the reads that act on a verdict (the
// rollback's, the verified mark's): an API blip there (common on k3s's
// datastore, kine) must not turn a verdict into "rollback failed" with no
// mark. About 6 s in all, within the caller's context.
var afterVerdict = wait.Backoff{Steps: 5, Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1}

// getRetried is get, retried on errors that may pass (not a missing
// Deployment, a refusal or a bad request).
func (r *Runner) getRetried(ctx context.Context, s config.Service) (*appsv1.Deployment, error) {
	var d *appsv1.Deployment
	err := retry.OnError(afterVerdict, func(err error) bool { return ctx.Err() == nil && rollout.Transient(err) }, func() error {
		var err error
		d, err = r.get(ctx, s)
		return err
	})
	return d, err
}
