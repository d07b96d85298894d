package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// What a failed rollout leads to: the verdict's marks (failed-image when
// the image is to blame, a retry mark otherwise: verdictOf), the rollback to
// what ran before, and, under GitOps, the exclusion that makes git go back
// with it, started at the verdict beside the rollback's wait.

// recover handles a failed rollout: remember the image (as failed when the
// image is to blame, as to be retried when another cause is: verdictOf),
// then roll back to what ran before (unless auto-rollback is off). The marks are written whatever the rollback does, so that a
// rollback that cannot be applied is reported once, not every run.
func (r *Runner) recover(ctx context.Context, s config.Service, dec Decision, before, ours *corev1.PodTemplateSpec, cause error, log *slog.Logger) (Outcome, error) {
	blame, evidence := verdictOf(cause)
	var exclusion *alongside
	if blame.Remembered() && s.AutoRollback && dec.Kustomization != "" {
		// Git must stop asking for the image, whatever the rollback does:
		// the exclusion starts now, beside the rollback, so that the policy,
		// the automation and the source move back while it rolls out (a
		// Kustomization interval in between would apply the bad tag again).
		exclusion = startAlongside(ctx, func(ctx context.Context) { r.excludeFailed(ctx, s, dec, log) })
	}
	out, err := r.rollBack(ctx, s, dec, blame, evidence, before, ours, cause, log)
	exclusion.Wait()
	return out, err
}

// rollBack writes the verdict's marks and restores what ran before (see
// recover).
func (r *Runner) rollBack(ctx context.Context, s config.Service, dec Decision, blame rollout.Cause, evidence string, before, ours *corev1.PodTemplateSpec, cause error, log *slog.Logger) (Outcome, error) {
	// Its own timeout even when runTimeout is spent (budget.rollback).
	rctx, cancel := r.rollback(ctx, s)
	defer cancel()
	var (
		mark     map[string]string
		restored *corev1.PodTemplateSpec
		prior    SoakMark // the passed soak of the image rolled back to
		hasPrior bool
		writeErr error // the last write's: nil, a refusal, or the last conflict
		tried    bool
		ended    *serviceEnd // before any rollback to wait for
	)
	end := func(o Outcome, err error) (bool, error) {
		ended = &serviceEnd{o, err}
		return true, nil
	}
	// One try: read, judge the Deployment still autodeploy's, write the
	// verdict's marks (and the rollback). Retried on a conflict only.
	try := func(context.Context) (bool, error) {
		tried = true
		d, err := r.getRetried(rctx, s)
		if err != nil {
			return end(OutcomeRollbackFailed, fmt.Errorf("%v; and the Deployment can no longer be read: %v", cause, err))
		}
		if !rollout.EqualIgnoreHash(&d.Spec.Template, ours) {
			// Changed by someone else between the verdict and now.
			img, _ := rollout.ContainerImage(&d.Spec.Template, dec.Container)
			return end(r.superseded(ctx, s, dec, &rollout.SupersededError{Deployment: s.Namespace + "/" + s.Deployment, By: rollout.TemplateWriter(d, dec.Container), Image: img}, log))
		}
		prior, hasPrior = ParseSoak(map[string]string{AnnSoak: d.Annotations[AnnSoakBefore]})
		mark = rolloutMarks(false)
		if blame.Remembered() {
			mark[AnnFailedImage] = mustJSON(FailedImage{Image: dec.Target, Reason: cause.Error(), At: r.Now().UTC()})
		} else {
			rt := NextRetry(d.Annotations, dec.Target, string(blame), cause.Error(), r.Now().UTC())
			rt.Evidence = elide(evidence, 300)
			mark[AnnRetry] = mustJSON(rt)
			log.Warn("not the image's fault: it will be tried again", "image", dec.Target, "cause", blame, "evidence", rt.Evidence, "attempt", rt.Attempts, "after", rt.After)
		}
		if !s.AutoRollback || dec.NoRollback {
			_, writeErr = rollout.AnnotateIfUnchanged(rctx, r.Kube, d, mark)
			return !apierrors.IsConflict(writeErr), nil
		}
		mark[rollout.ChangeCauseAnnotation] = fmt.Sprintf("autodeploy: rolled back from %s: %s", dec.Target, truncate(cause.Error(), 200))
		log.Info("rollback started", "from", dec.Target, "toRevision", dec.PreviousRevision)
		r.progress(s.Name, "rolling back")
		restored = nil
		if before != nil {
			var out *appsv1.Deployment
			if out, writeErr = rollout.RestoreTemplate(rctx, r.Kube, d, before, mark); writeErr == nil {
				restored = &out.Spec.Template
			}
		} else {
			var res rollout.UndoResult
			res, writeErr = rollout.Undo(rctx, r.Kube, d, rollout.UndoOptions{ToRevision: dec.PreviousRevision, Annotations: mark, Precondition: true})
			if writeErr == nil && res.Skipped {
				writeErr = fmt.Errorf("revision %d already has this template", res.ToRevision)
			}
			if writeErr == nil {
				t := res.Target.Spec.Template
				restored = &t
			}
		}
		return !apierrors.IsConflict(writeErr), nil
	}
	// The patches are conditional on the Deployment read, and during a
	// failing rollout the controller writes its status often: a rollback
	// that gave up after five immediate conflicts was "rollback failed"
	// (seen in TestGitOpsFluxReappliesDuringTheRollback). Conflicts are
	// retried with a backoff, within the rollback's bound; once the backoff
	// or the bound is spent, the last conflict is the write's error.
	bound := wait.ExponentialBackoffWithContext(rctx, rollbackConflicts, try)
	switch {
	case ended != nil:
		return ended.out, ended.err
	case !tried:
		return OutcomeRollbackFailed, fmt.Errorf("%v; and the rollback's time ran out before it started: %v", cause, bound)
	}
	if !s.AutoRollback || dec.NoRollback {
		if writeErr != nil {
			log.Error("could not remember the failed image", "error", writeErr)
		}
		if dec.NoRollback {
			log.Warn("not autodeploy's rollout: the failure is recorded, the rollout left as it is", "image", dec.Target)
			return OutcomeFailed, fmt.Errorf("%w (not autodeploy's rollout: left as it is)", cause)
		}
		log.Warn("auto-rollback is off: the failed rollout is left as it is", "image", dec.Target)
		return OutcomeFailed, cause
	}
	if writeErr != nil {
		return r.rollbackFailed(ctx, s, dec, blame, cause, writeErr, mark, log)
	}
	_, err := rollout.Wait(rctx, r.Kube, s.Namespace, s.Deployment, rollout.WaitOptions{Template: restored, Container: dec.Container, Grace: r.Grace, Progress: func(msg string) { r.progress(s.Name, msg) }})
	var sup *rollout.SupersededError
	switch {
	case ctx.Err() != nil:
		return OutcomeInterrupted, ctx.Err()
	case errors.As(err, &sup):
		// Someone (a person, Flux applying git before it followed the
		// exclusion) changed the Deployment during the rollback: not a
		// rollback that failed. The verdict's marks stay.
		log.Warn("superseded during the rollback: leaving it alone", "image", dec.Target, "by", sup.By, "now", sup.Image)
		r.progress(s.Name, sup.Error())
		if sup.By == flux.KustomizeManager {
			return OutcomeSuperseded, fmt.Errorf("%w; rolled back, then Flux applied the image again from git before git followed the rollback (%w): runs report it until Flux applies the policy's image", cause, sup)
		}
		return OutcomeSuperseded, fmt.Errorf("%w; rolled back, then %w", cause, sup)
	case err != nil:
		log.Error("rollback did not complete: someone must look", "error", err)
		return OutcomeRollbackFailed, fmt.Errorf("%w; rollback failed: %v", cause, err)
	}
	log.Info("rollback complete", "revision", dec.PreviousRevision)
	r.progress(s.Name, "rolled back")
	if img, _ := rollout.ContainerImage(restored, dec.Container); hasPrior && image.SameString(img, prior.Image) {
		// Back on the image verified and soaked before this deploy: it
		// is verified again (a promotion reads it), with its own date.
		// The verdict's marks (failed image, retry) stay.
		if err := r.markTemplate(rctx, s, restored, map[string]string{AnnVerified: "true", AnnSoak: mustJSON(prior)}); err != nil {
			log.Warn("could not mark the image rolled back to as verified again: a promotion from this service waits for its next verified image", "image", img, "error", err)
		} else {
			log.Info("verified again: the image rolled back to passed its verification and soak before", "image", img, "verifiedAt", prior.VerifiedAt)
		}
	}
	if !blame.Remembered() {
		return OutcomeRolledBack, fmt.Errorf("%w (%s, not the image: it will be tried again)", cause, blame.Who())
	}
	return OutcomeRolledBack, cause
}

// serviceEnd is how a service ended: its outcome and error.
type serviceEnd struct {
	out Outcome
	err error
}

// rollbackConflicts paces the rollback's retries of a patch that found the
// Deployment changed since it was read: about 10 s in all, 11 tries (the
// first and 10 retries).
var rollbackConflicts = wait.Backoff{Steps: 11, Duration: 20 * time.Millisecond, Factor: 2, Cap: 2 * time.Second, Jitter: 0.2}

// rollbackFailed records a rollback that could not be applied (no earlier
// revision, a paused Deployment...): the marks are written anyway, with the
// error, so later runs skip the image instead of failing the same way
// every two minutes, and status shows what to do. When another cause than
// the image is to blame (the registry, a missing Secret, the cluster), the
// image is not remembered as failed: the rollout stays unverified, and runs
// verify it again after the retry's backoff (the pods start once the cause
// has passed).
func (r *Runner) rollbackFailed(ctx context.Context, s config.Service, dec Decision, blame rollout.Cause, cause, err error, mark map[string]string, log *slog.Logger) (Outcome, error) {
	log.Error("rollback failed: someone must look", "error", err)
	if blame.Remembered() {
		fi := FailedImage{Image: dec.Target, Reason: cause.Error(), At: r.Now().UTC(), RollbackError: err.Error()}
		mark[AnnFailedImage] = mustJSON(fi)
		delete(mark, rollout.ChangeCauseAnnotation)
	} else {
		var rt Retry
		_ = json.Unmarshal([]byte(mark[AnnRetry]), &rt)
		rt.Reason += "; the rollback could not be applied: " + err.Error()
		mark = map[string]string{AnnRetry: mustJSON(rt)}
	}
	// A read after the verdict, retried: a blip here lost the mark, and the
	// next run failed the same way (issue 17).
	if d, gerr := r.getRetried(ctx, s); gerr != nil {
		log.Error("could not remember the failed image", "error", gerr)
	} else {
		if _, aerr := rollout.Annotate(ctx, r.Kube, d, mark); aerr != nil {
			log.Error("could not remember the failed image", "error", aerr)
		}
	}
	return OutcomeRollbackFailed, fmt.Errorf("%w; rollback failed: %v", cause, err)
}
