package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// Manager carries out the commands a person runs on one service: rollback,
// hold, resume, forget (forget.go).
type Manager struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	Log     *slog.Logger
	Now     func() time.Time
	// By names who acts, user@host, for the log and the hold.
	By       string
	Progress func(msg string)
	// Notify tells people about rollbacks, holds and resumes; nil sends
	// nothing.
	Notify *notify.Sender
	Health func(ctx context.Context, h config.Health, image, tag string) error
}

// RollbackOptions are the inputs of a manual rollback.
type RollbackOptions struct {
	ToRevision int64
	DryRun     bool
	Reason     string
}

// RollbackResult says what a rollback did.
type RollbackResult struct {
	Service                  string `json:"service"`
	From, To                 string
	FromRevision, ToRevision int64
	// Skipped: the template already matched the target; nothing changed.
	Skipped bool
	DryRun  bool
	// Kustomization is namespace/name of the Flux Kustomization that applies
	// the Deployment from git, if any.
	Kustomization string
	// ReconcileDisabled: the rollback set kustomize-controller's
	// reconcile: disabled annotation on the Deployment (resume removes it),
	// so that Flux leaves just this object alone while it is held.
	ReconcileDisabled bool
	// Excluded is the ImageRepository (namespace/name) whose exclusionList
	// got the tag rolled back from, so that git goes back too.
	Excluded string
	// PointedBack is, for a promoted service, the ImagePolicy autodeploy
	// owns for it (namespace/name), pointed back at the image rolled back
	// to so that git goes back too (instead of an exclusion).
	PointedBack string
	// ExcludeError says why the tag could not be excluded: the rollback
	// stands, but git may bring the image back once the service is resumed.
	ExcludeError string
	// ImageKept: the target runs the same image (only the configuration
	// changes); the image is neither remembered as failed nor excluded.
	ImageKept bool
	// GitWarning says why git does not follow the rollback yet (the
	// automation did not write the policy's new tag in time, the source
	// did not fetch it); "" when it does.
	GitWarning string
}

// ProblemError is a service the config and the cluster disagree about (a
// container that is not there): exit 7, as for a run.
type ProblemError struct{ Err error }

func (e *ProblemError) Error() string { return e.Err.Error() }
func (e *ProblemError) Unwrap() error { return e.Err }

// ResolveContainer applies the config's container rule to d (see Plan).
func ResolveContainer(d *appsv1.Deployment, name string) (string, error) {
	c, err := resolveContainer(d, name)
	if err != nil {
		return "", &ProblemError{Err: err}
	}
	return c, nil
}

// ErrNotFound wraps a missing Deployment, so the CLI can tell it apart.
type ErrNotFound struct{ Namespace, Name string }

func (e *ErrNotFound) Error() string {
	return fmt.Sprintf("Deployment %s/%s not found (check namespace and deployment of the service in the config)", e.Namespace, e.Name)
}

func (m *Manager) get(ctx context.Context, s config.Service) (*appsv1.Deployment, error) {
	d, err := m.Kube.AppsV1().Deployments(s.Namespace).Get(ctx, s.Deployment, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, &ErrNotFound{Namespace: s.Namespace, Name: s.Deployment}
	}
	return d, err
}

func (m *Manager) progress(format string, args ...any) {
	if m.Progress != nil {
		m.Progress(fmt.Sprintf(format, args...))
	}
}

// Rollback restores the previous revision (or o.ToRevision) of s with
// `kubectl rollout undo` semantics, waits for it as `run` waits, runs the
// health check, then holds the service and remembers the image rolled back
// from as failed, so that the next run does not put it back.
func (m *Manager) Rollback(ctx context.Context, s config.Service, o RollbackOptions) (RollbackResult, error) {
	res := RollbackResult{Service: s.Name, DryRun: o.DryRun}
	d, err := m.get(ctx, s)
	if err != nil {
		return res, err
	}
	container, err := resolveContainer(d, s.Container)
	if err != nil {
		return res, &ProblemError{Err: err}
	}
	res.From, _ = rollout.ContainerImage(&d.Spec.Template, container)
	res.Kustomization = gitops.KustomizationOf(d)
	log := m.Log.With("svc", s.Name, "by", m.By)
	reason := o.Reason
	if reason == "" {
		reason = "manual rollback"
	}
	now := m.Now().UTC()
	newHold := Hold{By: m.By, Reason: reason, At: now, From: res.From}
	if old, held := ParseHold(d.Annotations); held {
		// A Kustomization an autodeploy 1.x rollback suspended is resumed
		// by resume only as long as the hold records it (issue 17, item
		// 13: a new rollback dropped the record, and the Kustomization
		// stayed suspended for ever).
		newHold.Kustomization = old.Kustomization
	}
	// The rollout undone takes its marks with it (rolloutMarks), its soak
	// mark included: left, it dated a later verification of the same image
	// from this one's, and status called the revision rolled back to soaked.
	ann := rolloutMarks(false)
	ann[AnnHold] = mustJSON(newHold)
	ann[AnnFailedImage] = mustJSON(FailedImage{Image: res.From, Reason: "rolled back by " + m.By + ": " + reason, At: now})
	// The cause kubectl would copy from the target revision would describe
	// how that revision first came, not this rollback.
	ann[rollout.ChangeCauseAnnotation] = fmt.Sprintf("autodeploy rollback by %s from %s: %s", m.By, res.From, reason)
	if o.ToRevision == 0 {
		if err := m.refusePingPong(ctx, s, d, container); err != nil {
			log.Error("rollback refused", "error", err)
			return res, err
		}
	}
	if res.Kustomization != "" {
		// Flux's per-object lever, with its record, in the same patch as
		// the rollback: from then on kustomize-controller skips this
		// Deployment, and only it, until resume; nothing else of the
		// Kustomization is frozen. One someone else set (no record) stays
		// theirs: resume leaves it. A second rollback under the same hold
		// renews the record.
		old, held := ParseHold(d.Annotations)
		if st := gitops.ReadReconcile(d.Annotations, held && old.ReconcileDisabled); !st.Disabled || st.Record != nil {
			gitops.DisableReconcile(ann, gitops.ReconcileRecord{By: m.By, Reason: reason, At: now, Kustomization: res.Kustomization})
			res.ReconcileDisabled = true
		}
	}
	// A rollback that keeps the image (only the configuration changes)
	// says nothing about the image: it is not remembered as failed, nor
	// excluded.
	sameImage := false
	adjust := func(target *appsv1.ReplicaSet, ann map[string]string) {
		if to, _ := rollout.ContainerImage(&target.Spec.Template, container); image.SameString(to, res.From) {
			sameImage = true
			delete(ann, AnnFailedImage)
		}
	}
	undo, err := rollout.Undo(ctx, m.Kube, d, rollout.UndoOptions{ToRevision: o.ToRevision, Annotations: ann, Adjust: adjust, DryRun: o.DryRun})
	res.ImageKept = sameImage
	res.FromRevision, res.ToRevision, res.Skipped = undo.FromRevision, undo.ToRevision, undo.Skipped
	if undo.Target != nil {
		res.To, _ = rollout.ContainerImage(&undo.Target.Spec.Template, container)
	}
	if err != nil || undo.Skipped {
		res.ReconcileDisabled = false
	}
	if err != nil {
		log.Error("rollback failed: nothing changed", "error", err)
		return res, err
	}
	if undo.Skipped || o.DryRun {
		log.Info("rollback", "dryRun", o.DryRun, "skipped", undo.Skipped, "from", res.From, "to", res.To, "toRevision", res.ToRevision)
		return res, nil
	}
	log.Info("rollback started", "from", res.From, "to", res.To, "fromRevision", res.FromRevision, "toRevision", res.ToRevision, "reason", reason, "reconcileDisabled", res.ReconcileDisabled)
	// The hold, the failed mark and the reconcile lever with its record
	// must survive a kubectl rollout undo (it replaces the Deployment's
	// annotations with the target ReplicaSet's): resume and forget strip
	// every copy.
	marks := map[string]string{AnnHold: ann[AnnHold]}
	if res.ReconcileDisabled {
		marks[flux.KustomizeReconcileAnnotation], marks[gitops.AnnReconcileDisabled] = ann[flux.KustomizeReconcileAnnotation], ann[gitops.AnnReconcileDisabled]
	}
	if !sameImage {
		marks[AnnFailedImage] = ann[AnnFailedImage]
	}
	markErr := m.copyToReplicaSets(ctx, s, d, marks)
	var (
		exclusion                *alongside
		excluded                 string
		gitWarning, excludeError string
	)
	if res.Kustomization != "" && !sameImage {
		// Git must stop asking for the image too, or resume brings it back:
		// the exclusion goes beside the rollout's wait, as an automatic
		// rollback's does (recover), and is waited for before any return.
		kustomization, from, to := res.Kustomization, res.From, res.To
		exclusion = startAlongside(ctx, func(ctx context.Context) {
			var err error
			excluded, gitWarning, err = m.exclude(ctx, s, kustomization, from, to, reason)
			if gitWarning != "" {
				log.Warn("git does not follow the rollback yet", "warning", gitWarning)
			}
			if err != nil {
				excludeError = err.Error()
				log.Error("could not exclude the tag rolled back from: Flux applies it again from git once resumed", "error", err)
			}
		})
	}
	err = m.verifyRollback(ctx, s, container, undo, res.To, log)
	exclusion.Wait()
	res.Excluded, res.GitWarning, res.ExcludeError = excluded, gitWarning, excludeError
	if s.Promote != nil {
		res.Excluded, res.PointedBack = "", excluded
	}
	if err != nil {
		return res, err
	}
	log.Info("rollback complete", "image", res.To, "revision", res.ToRevision)
	m.Notify.Send(ctx, notify.Event{Kind: notify.Rollback, Level: "warning", Service: s.Name, Time: now, From: res.From, To: res.To, Reason: reason, By: m.By})
	return res, markErr
}

// verifyRollback waits for the rollback's rollout, then runs the health
// check: a failure of either is a RollbackFailedError, a wait the caller cut
// short a RollbackUnverifiedError.
func (m *Manager) verifyRollback(ctx context.Context, s config.Service, container string, undo rollout.UndoResult, to string, log *slog.Logger) error {
	// Bounded like a run's wait: a rollback that never completes must not
	// keep an SSH session (and the lock) forever.
	wctx, cancel := context.WithTimeout(ctx, s.RolloutTimeout)
	defer cancel()
	wo := rollout.WaitOptions{Container: container, Progress: func(msg string) { m.progress("%s", msg) }}
	if undo.Deployment != nil {
		wo.Template = &undo.Deployment.Spec.Template
	}
	// A wait or health check the caller cut short (a signal, a lost lock)
	// says nothing against the rollback: not exit 6, only not verified.
	unverified := func(step string) error {
		log.Warn("rollback applied, its "+step+" interrupted: not verified", "error", context.Cause(ctx))
		return &RollbackUnverifiedError{Namespace: s.Namespace, Deployment: s.Deployment, Err: context.Cause(ctx)}
	}
	if _, err := rollout.Wait(wctx, m.Kube, s.Namespace, s.Deployment, wo); err != nil {
		if ctx.Err() != nil {
			return unverified("wait")
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("did not finish within %s (rolloutTimeout): %w", s.RolloutTimeout, err)
		}
		log.Error("rollback did not complete", "error", err)
		return &RollbackFailedError{Err: err}
	}
	if s.Health != nil {
		ref, _ := image.Parse(to)
		if err := m.health()(ctx, *s.Health, to, ref.Tag); err != nil {
			if ctx.Err() != nil {
				return unverified("health check")
			}
			log.Error("health check failed after rollback", "error", err)
			return &RollbackFailedError{Err: err}
		}
	}
	return nil
}

// refusePingPong refuses a rollback to the previous revision that would put
// back an image known to be bad: the image autodeploy remembers as failed,
// or a newer image the current revision itself rolled back from (a `kubectl
// rollout undo` or an automatic rollback just ran: undoing it again would
// restore what was undone, and remember the good image as failed).
// --to-revision says the operator knows which revision they want.
func (m *Manager) refusePingPong(ctx context.Context, s config.Service, d *appsv1.Deployment, container string) error {
	owned, err := rollout.ListOwned(ctx, m.Kube, d)
	if err != nil {
		return err
	}
	target, err := rollout.PreviousRevision(d, owned)
	if err != nil {
		return nil // Undo reports it, as kubectl does
	}
	img, _ := rollout.ContainerImage(&target.Spec.Template, container)
	rev := rollout.Revision(target)
	if f, ok := ParseFailedImage(d.Annotations); ok && image.SameString(f.Image, img) {
		return fmt.Errorf("refusing to roll %s back to revision %d: it runs %s, which autodeploy remembers as failed (%s); restore it anyway with --to-revision %d, or choose another revision from 'autodeploy history %s'",
			s.Name, rev, img, truncate(f.Reason, 120), rev, s.Name)
	}
	// Going back means going to older content. A target first rolled out
	// after the current template was is newer: the current revision is a
	// rollback (kubectl rollout undo reactivates an old ReplicaSet under a
	// new revision number), and undoing it would bring the newer image back.
	if cur := rollout.Current(d, owned); cur != nil && rollout.FirstRevision(target) > rollout.FirstRevision(cur) {
		curImg, _ := rollout.ContainerImage(&cur.Spec.Template, container)
		return fmt.Errorf("refusing to roll %s back to revision %d: it runs %s, which was rolled out after the current %s; the current revision %d is itself a rollback (e.g. kubectl rollout undo), and undoing it would bring the newer image back; give --to-revision N to choose (see 'autodeploy history %s')",
			s.Name, rev, img, curImg, rollout.Revision(cur), s.Name)
	}
	return nil
}

func (m *Manager) health() func(ctx context.Context, h config.Health, image, tag string) error {
	if m.Health != nil {
		return m.Health
	}
	return defaultHealth
}

// RollbackFailedError is a rollback that was applied but did not become
// healthy: someone must look.
type RollbackFailedError struct{ Err error }

func (e *RollbackFailedError) Error() string {
	return "rollback did not become healthy: " + e.Err.Error()
}
func (e *RollbackFailedError) Unwrap() error { return e.Err }

// RollbackUnverifiedError is a rollback that was applied (the hold and the
// failed mark too) but whose wait or health check was cut short by the
// caller (a signal, a lost lock): it is not known to be unhealthy, only
// not verified yet. Err is the cause of the caller's context.
type RollbackUnverifiedError struct {
	Namespace, Deployment string
	Err                   error
}

func (e *RollbackUnverifiedError) Error() string {
	return fmt.Sprintf("rollback applied but not yet verified (%v): check it with kubectl rollout status deployment/%s -n %s", e.Err, e.Deployment, e.Namespace)
}
func (e *RollbackUnverifiedError) Unwrap() error { return e.Err }

// Hold freezes s: runs skip it until Resume. The caller holds the run's
// lock (a rollback in progress finishes first), and the write is
// conditional on the Deployment read: a hold never overwrites a mark
// written in between. It writes only the hold: the levers on Flux keep
// their own records (internal/gitops).
func (m *Manager) Hold(ctx context.Context, s config.Service, reason string) (Hold, error) {
	return m.HoldUntil(ctx, s, reason, time.Time{})
}

// HoldUntil is Hold with an end: from until on (zero: none), runs plan as
// if the service were not held, and the next run removes the hold
// (ReleaseExpiredHold).
func (m *Manager) HoldUntil(ctx context.Context, s config.Service, reason string, until time.Time) (Hold, error) {
	var (
		h    Hold
		d    *appsv1.Deployment
		mark map[string]string
	)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		if d, err = m.get(ctx, s); err != nil {
			return err
		}
		h = Hold{By: m.By, Reason: reason, At: m.Now().UTC(), Until: until.UTC()}
		if old, held := ParseHold(d.Annotations); held {
			// Keep what an earlier hold (a rollback) will have to undo.
			h.From, h.Kustomization, h.ReconcileDisabled = old.From, old.Kustomization, old.ReconcileDisabled
		}
		mark = map[string]string{AnnHold: mustJSON(h)}
		_, err = rollout.AnnotateIfUnchanged(ctx, m.Kube, d, mark)
		return err
	})
	if err != nil {
		return Hold{}, err
	}
	img := ""
	if c, err := resolveContainer(d, s.Container); err == nil {
		img, _ = rollout.ContainerImage(&d.Spec.Template, c)
	}
	why, attrs := reason, []any{"svc", s.Name, "by", m.By, "reason", reason, "image", img}
	if !h.Until.IsZero() {
		why += " (until " + h.Until.Format("2006-01-02 15:04 UTC") + ")"
		attrs = append(attrs, "until", h.Until)
	}
	m.Log.Info("held", attrs...)
	m.Notify.Send(ctx, notify.Event{Kind: notify.Hold, Level: "warning", Service: s.Name, Time: h.At, To: img, Reason: why, By: m.By})
	return h, m.copyToReplicaSets(ctx, s, d, mark)
}

// copyToReplicaSets puts marks that must survive `kubectl rollout undo` on
// the Deployment's ReplicaSets too (see rollout.AnnotateReplicaSets). The
// Deployment already has them: failing here is a warning.
func (m *Manager) copyToReplicaSets(ctx context.Context, s config.Service, d *appsv1.Deployment, mark map[string]string, only ...string) error {
	if err := rollout.AnnotateReplicaSets(ctx, m.Kube, d, mark, only...); err != nil {
		m.Log.Warn("marks not copied to the ReplicaSets: a kubectl rollout undo would drop them", "svc", s.Name, "error", err)
		return &ReplicaSetMarksError{Err: err}
	}
	return nil
}

// ReplicaSetMarksError: the Deployment was marked, its ReplicaSets not. The
// command did its job; a kubectl rollout undo would lose the mark.
type ReplicaSetMarksError struct{ Err error }

func (e *ReplicaSetMarksError) Error() string {
	return "the ReplicaSets could not be marked too, so a kubectl rollout undo would drop the mark: " + e.Err.Error()
}
func (e *ReplicaSetMarksError) Unwrap() error { return e.Err }

// ResumeResult says what Resume did.
type ResumeResult struct {
	WasHeld      bool
	Hold         Hold
	Resumed      string // Kustomization resumed, namespace/name
	ForgotFailed string // the failed image forgotten
	StillFailed  string // the failed image still remembered
	// KustomizationGone: the Kustomization the hold suspended no longer
	// exists; the hold is released anyway.
	KustomizationGone string
	// ForeignReconcile is the command that removes a reconcile: disabled
	// lever on the Deployment that is not autodeploy's (no record): resume
	// leaves it.
	ForeignReconcile string
	// ReconcileEnabled is the Kustomization (namespace/name) that applies
	// the Deployment again now that the rollback's reconcile: disabled
	// annotation is gone.
	ReconcileEnabled string
	// Unexcluded lists the exclusionList patterns removed with the
	// forgotten image; UnexcludeError why they could not be.
	Unexcluded     []string
	UnexcludeError string
}

// Resume releases a hold (and resumes the Kustomization it suspended); the
// failed-image memory stays unless forgetFailed.
func (m *Manager) Resume(ctx context.Context, s config.Service, forgetFailed bool) (ResumeResult, error) {
	return m.resume(ctx, s, forgetFailed, false)
}

// ReleaseExpiredHold is Resume for a hold whose end (hold --for, --until)
// has passed at m.Now: what a run does before planning the service. The
// write is conditional on the Deployment read, and nothing is written if
// the hold read then is not expired (renewed, or replaced by a rollback's,
// in between): res.WasHeld is false.
func (m *Manager) ReleaseExpiredHold(ctx context.Context, s config.Service) (ResumeResult, error) {
	return m.resume(ctx, s, false, true)
}

func (m *Manager) resume(ctx context.Context, s config.Service, forgetFailed, expiredOnly bool) (ResumeResult, error) {
	var (
		res     ResumeResult
		d       *appsv1.Deployment
		ann     map[string]string
		release gitops.Release
	)
	// Conditional on the Deployment read: a rollback's marks written in
	// between are read again, never overwritten.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		res = ResumeResult{}
		var err error
		if d, err = m.get(ctx, s); err != nil {
			return err
		}
		res.Hold, res.WasHeld = ParseHold(d.Annotations)
		if expiredOnly && (!res.WasHeld || !res.Hold.Expired(m.Now())) {
			res.WasHeld = false
			return nil
		}
		ann = map[string]string{AnnHold: ""}
		if rt, ok := ParseRetry(d.Annotations); ok && forgetFailed {
			// A pending retry is memory of a failure too; forgetting it lets the
			// next run try the image at once.
			ann[AnnRetry] = ""
			res.ForgotFailed = rt.Image
		}
		if f, ok := ParseFailedImage(d.Annotations); ok {
			if forgetFailed {
				ann[AnnFailedImage] = ""
				res.ForgotFailed = f.Image
			} else {
				res.StillFailed = f.Image
			}
		}
		// Every reconcile lever of autodeploy's goes, whatever the hold says
		// now (rewritten, deleted by hand): its record is beside it, on the
		// Deployment or on a ReplicaSet an undo would revive it from.
		owned, err := rollout.ListOwned(ctx, m.Kube, d)
		if err != nil {
			return err
		}
		release = gitops.ReleaseReconcile(d, owned, res.WasHeld, true, res.Hold.ReconcileDisabled)
		if release.Deployment {
			gitops.EnableReconcile(ann)
			if gitops.ReadReconcile(d.Annotations, res.Hold.ReconcileDisabled).Disabled {
				res.ReconcileEnabled = gitops.KustomizationOf(d)
			}
		}
		if release.Foreign {
			res.ForeignReconcile = fmt.Sprintf("kubectl annotate deployment/%s -n %s %s-", d.Name, d.Namespace, flux.KustomizeReconcileAnnotation)
		}
		if res.Hold.Kustomization != "" {
			// A hold of an earlier version, whose rollback --suspend-flux
			// suspended the whole Kustomization.
			switch err := gitops.ResumeSuspended(ctx, m.Dynamic, res.Hold.Kustomization); {
			case apierrors.IsNotFound(err):
				// Deleted since: nothing to resume, and no reason to keep the
				// service held forever.
				res.KustomizationGone = res.Hold.Kustomization
			case err != nil:
				m.Log.Error("resume failed: the hold is kept", "svc", s.Name, "by", m.By, "kustomization", res.Hold.Kustomization, "error", err)
				return fmt.Errorf("could not resume Flux Kustomization %s (the hold is kept; try again, or flux resume kustomization): %w", res.Hold.Kustomization, err)
			default:
				res.Resumed = res.Hold.Kustomization
			}
		}
		_, err = rollout.AnnotateIfUnchanged(ctx, m.Kube, d, ann)
		return err
	})
	if err != nil {
		// Not logged here: resume's session logs "resume failed" (one line),
		// and a run releasing an expired hold its own warning.
		return res, err
	}
	if expiredOnly && !res.WasHeld {
		return res, nil
	}

	if forgetFailed {
		// Forgetting the service's failures lets the policy select those
		// images again: every exclusion autodeploy recorded for the
		// service goes, not only the current failed image's (one added by
		// a rollback that ended superseded, or for an earlier failure,
		// stayed for ever: issue 17, item 8), and whatever the Deployment
		// shows now (no failed mark left, no longer applied from git: the
		// record on the ImageRepository is what counts).
		res.Unexcluded, err = m.unexclude(ctx, s)
		if err != nil {
			m.Log.Warn("could not remove the exclusions autodeploy recorded for the service's failed images", "svc", s.Name, "error", err)
			res.UnexcludeError = err.Error()
		}
	}
	if expiredOnly {
		h := res.Hold
		m.Log.Info("hold expired", "svc", s.Name, "heldBy", h.By, "until", h.Until.UTC(), "reason", h.Reason, "kustomization", res.Resumed, "reconcileEnabled", res.ReconcileEnabled)
		m.Notify.Send(ctx, notify.Event{Kind: notify.HoldExpired, Level: "info", Service: s.Name, Time: m.Now().UTC(), Reason: h.Reason, By: h.By})
	} else {
		m.Log.Info("resumed", "svc", s.Name, "by", m.By, "wasHeld", res.WasHeld, "kustomization", res.Resumed, "reconcileEnabled", res.ReconcileEnabled, "forgotFailed", res.ForgotFailed)
		if res.WasHeld {
			m.Notify.Send(ctx, notify.Event{Kind: notify.Resume, Level: "info", Service: s.Name, Time: m.Now().UTC(), Reason: res.Hold.Reason, By: m.By})
		}
	}
	// A mark left on a ReplicaSet would come back with kubectl rollout
	// undo; the reconcile lever only where it is autodeploy's.
	marks := maps.Clone(ann)
	delete(marks, flux.KustomizeReconcileAnnotation)
	delete(marks, gitops.AnnReconcileDisabled)
	markErr := m.copyToReplicaSets(ctx, s, d, marks)
	if len(release.ReplicaSets) > 0 && markErr == nil {
		lever := map[string]string{}
		gitops.EnableReconcile(lever)
		markErr = m.copyToReplicaSets(ctx, s, d, lever, release.ReplicaSets...)
	}
	return res, markErr
}

// policyRepository reads s's ImagePolicy and returns the image API and the
// policy's ImageRepository.
func (m *Manager) policyRepository(ctx context.Context, s config.Service) (flux.API, flux.Ref, error) {
	api, err := flux.Detect(ctx, m.Kube.Discovery())
	if err != nil {
		return api, flux.Ref{}, err
	}
	u, err := m.Dynamic.Resource(api.Policies()).Namespace(s.PolicyNamespace).Get(ctx, s.PolicyName, metav1.GetOptions{})
	if err != nil {
		return api, flux.Ref{}, fmt.Errorf("read ImagePolicy %s/%s: %w", s.PolicyNamespace, s.PolicyName, err)
	}
	p := flux.ParsePolicy(u)
	if p.RepoName == "" {
		return api, flux.Ref{}, fmt.Errorf("ImagePolicy %s has no imageRepositoryRef", p.Key())
	}
	return api, flux.Ref{Namespace: p.RepoNamespace, Name: p.RepoName}, nil
}

// exclude makes git go back with a manual rollback from img to restored,
// by the same path as an automatic one (gitops.Git.GoBack): it returns
// the lever's object (the ImageRepository, or a promoted service's owned
// ImagePolicy), and why git does not follow yet ("" when it does).
func (m *Manager) exclude(ctx context.Context, s config.Service, kustomization, img, restored, reason string) (string, string, error) {
	back := gitops.Back{Service: s.Name, Kustomization: kustomization, Failed: img, Restored: restored, Reason: "rolled back by " + m.By + ": " + reason,
		Policy: flux.Ref{Namespace: s.PolicyNamespace, Name: s.PolicyName}}
	var (
		api flux.API
		err error
	)
	if s.Promote != nil {
		owned, root := promotionRefs(s)
		back.Owned, back.Root = &owned, &root
		api, err = flux.Detect(ctx, m.Kube.Discovery())
	} else {
		api, back.Repository, err = m.policyRepository(ctx, s)
	}
	if err != nil {
		return "", "", err
	}
	g := gitops.Git{Dynamic: m.Dynamic, API: api, Now: m.Now}
	back.Rescan = func(ctx context.Context, repo flux.Ref) bool {
		m.Log.Info("tag excluded so that git follows the rollback", "svc", s.Name, "repository", repo.String(), "image", img)
		// Bounded by the command's own budget (it holds the lock, not a
		// run's Flux budget).
		rctx, cancel := context.WithTimeout(ctx, RescanBound)
		defer cancel()
		answered, problems := gitops.Rescan(rctx, m.Dynamic, api, repo, m.Now())
		for _, p := range problems {
			m.Log.Warn("rescan after changing the exclusionList", "svc", s.Name, "repository", repo.String(), "problem", p)
		}
		return answered
	}
	out, err := g.GoBack(ctx, back)
	if err != nil {
		return "", "", err
	}
	if back.Owned != nil {
		return back.Owned.String(), out.Warning, nil
	}
	return back.Repository.String(), out.Warning, nil
}

// RescanBound bounds a manual rollback's wait for its ImageRepository's
// rescan after the exclusion.
const RescanBound = 30 * time.Second

// unexclude removes every exclusion autodeploy recorded for s from s's
// ImageRepository; others' (another service's, a person's) stay.
func (m *Manager) unexclude(ctx context.Context, s config.Service) ([]string, error) {
	if s.PolicyName == "" {
		// Promoted: no ImagePolicy, no repository of its own, and no
		// exclusion (a promoted Deployment is never Flux's, plan.go).
		return nil, nil
	}
	api, repo, err := m.policyRepository(ctx, s)
	if err != nil {
		return nil, err
	}
	removed, err := gitops.Unexclude(ctx, m.Dynamic, api, repo, func(e gitops.Exclusion) bool { return e.Service == s.Name })
	var out []string
	for _, e := range removed {
		out = append(out, repo.String()+": "+e.Pattern)
	}
	return out, err
}
