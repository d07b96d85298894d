package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/retry"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// The soak (config soak): after a verified rollout, its revision is
// watched until the soak ends. minReadySeconds only covers the rollout
// (kubernetes/kubernetes#11484): a crash minutes after "healthy" is only
// caught by looking again. A run watches while its budget allows; a later
// run carries the soak on from what the cluster keeps (AnnSoak, and each
// pod's lastState.terminated.finishedAt and Ready condition), so a crash
// between two cron runs is still caught: the evidence is dated, not seen.

// soakPoll is how often a run looks at the soaking revision's pods.
const soakPoll = time.Second

// soakHealthEvery is how often a run sends the health check during a soak
// (and once when it ends).
const soakHealthEvery = 30 * time.Second

// soakEvidence returns what, among pods of the soaking revision, counts
// against the image between since (its verification) and until (the
// soak's end; later evidence is not the soak's): a container that
// terminated (it restarted), or a pod that was there at the verification
// and has left Ready. A pod being deleted (a scale-down, a drain) proves
// nothing. "" when there is nothing.
func soakEvidence(pods []corev1.Pod, since, until time.Time) string {
	in := func(t metav1.Time) bool { return !t.Time.Before(since) && !t.Time.After(until) }
	var found []string
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			if t := cs.LastTerminationState.Terminated; t != nil && in(t.FinishedAt) {
				found = append(found, fmt.Sprintf("container %s of pod %s restarted at %s (exit code %d, %s; restarts: %d)",
					cs.Name, p.Name, t.FinishedAt.UTC().Format(time.RFC3339), t.ExitCode, orNone(t.Reason), cs.RestartCount))
			}
		}
		if p.CreationTimestamp.Time.After(since) {
			continue // not Ready at the verification: leaving Ready cannot be told from not yet Ready
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue && in(c.LastTransitionTime) {
				found = append(found, fmt.Sprintf("pod %s left Ready at %s (%s)", p.Name, c.LastTransitionTime.UTC().Format(time.RFC3339), orNone(strings.TrimSpace(c.Reason+" "+c.Message))))
			}
		}
	}
	sort.Strings(found)
	return strings.Join(found, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

// revisionPods lists the pods of d's current ReplicaSet (its template's).
func (r *Runner) revisionPods(ctx context.Context, d *appsv1.Deployment) ([]corev1.Pod, error) {
	owned, err := rollout.ListOwned(ctx, r.Kube, d)
	if err != nil {
		return nil, err
	}
	cur := rollout.Current(d, owned)
	if cur == nil {
		return nil, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(cur.Spec.Selector)
	if err != nil {
		return nil, err
	}
	list, err := r.Kube.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == cur.UID && labels.Set(p.Labels).Has(appsv1.DefaultDeploymentUniqueLabelKey) {
			out = append(out, p)
		}
	}
	return out, nil
}

// soakEnd is how a soak's watch ended in this run.
type soakEnd int

const (
	soakPassed  soakEnd = iota // the soak is over with nothing against the image
	soakPending                // the run's budget (or the run) ended first: a later run carries it on
	soakFailed                 // evidence against the image (the error says what)
	soakGone                   // the Deployment no longer runs the soaked image, or cannot be read
)

// watchSoak watches the soak of m until it ends, within the run's budget
// (rolloutsCtx): the pods of the revision for evidence (soakEvidence), and
// the health check every soakHealthEvery and once at the end.
func (r *Runner) watchSoak(ctx context.Context, s config.Service, m SoakMark, log *slog.Logger) (soakEnd, *appsv1.Deployment, error) {
	wctx := r.checks()
	ref, _ := image.Parse(m.Image)
	var lastHealth time.Time
	for {
		if ctx.Err() != nil || wctx.Err() != nil {
			return soakPending, nil, nil
		}
		d, err := r.getRetried(ctx, s)
		switch {
		case apierrors.IsNotFound(err):
			return soakGone, nil, err
		case err != nil:
			return soakPending, nil, err
		}
		c := ServiceContainer(d, s)
		if img, _ := rollout.ContainerImage(&d.Spec.Template, c); !image.SameString(img, m.Image) {
			return soakGone, d, &rollout.SupersededError{Deployment: s.Namespace + "/" + s.Deployment, By: rollout.TemplateWriter(d, c), Image: img}
		}
		pods, err := r.revisionPods(ctx, d)
		if err != nil {
			return soakPending, d, err
		}
		now := r.Now()
		end := now
		if end.After(m.Until) {
			end = m.Until
		}
		if ev := soakEvidence(pods, m.VerifiedAt, end); ev != "" {
			return soakFailed, d, &rollout.FailedError{Deployment: s.Namespace + "/" + s.Deployment, Cause: rollout.CauseImage, Evidence: ev,
				Message: fmt.Sprintf("soak failed %s after the verification: %s", now.Sub(m.VerifiedAt).Round(time.Second), ev)}
		}
		over := !now.Before(m.Until)
		if s.Health != nil && (over || now.Sub(lastHealth) >= soakHealthEvery) {
			lastHealth = now
			if err := r.Health(wctx, *s.Health, m.Image, ref.Tag); err != nil {
				if wctx.Err() != nil {
					return soakPending, d, nil
				}
				cause, _ := verdictOf(err)
				return soakFailed, d, fmt.Errorf("soak failed: the health check failed (%s): %w", cause.Who(), err)
			}
		}
		if over {
			return soakPassed, d, nil
		}
		wait := min(soakPoll, m.Until.Sub(now))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-wctx.Done():
			t.Stop()
			return soakPending, d, nil
		case <-ctx.Done():
			t.Stop()
			return soakPending, d, nil
		}
	}
}

// ServiceContainer is the container of d that s deploys (the config's, or
// the only one).
func ServiceContainer(d *appsv1.Deployment, s config.Service) string {
	if c, err := resolveContainer(d, s.Container); err == nil {
		return c
	}
	return s.Container
}

// soak carries a verified rollout through its soak and acts on the end
// where it is decided: a failure is a failed rollout (recover: rollback,
// and the image remembered when the evidence is the image's); a pass is
// marked; a soak the run cannot see through is left to the next run.
// before is the template before this run's deploy (nil for a soak an
// earlier run started: the rollback goes to dec.PreviousRevision).
func (r *Runner) soak(ctx context.Context, s config.Service, dec Decision, m SoakMark, before *corev1.PodTemplateSpec, log *slog.Logger) (Outcome, error) {
	left := m.Until.Sub(r.Now()).Round(time.Second)
	if left > 0 {
		r.progress(s.Name, fmt.Sprintf("soaking %s, %s left", m.Image, left))
	}
	end, d, err := r.watchSoak(ctx, s, m, log)
	switch end {
	case soakPassed:
		if err := r.markSoaked(ctx, d, s, m); err != nil {
			log.Warn("could not mark the soak passed; the next run looks again", "error", err)
		}
		log.Info("soaked", "image", m.Image, "verifiedAt", m.VerifiedAt, "soak", s.Soak)
		r.progress(s.Name, "soaked")
		return OutcomeSoaked, nil
	case soakPending:
		left := m.Until.Sub(r.Now()).Round(time.Second)
		if err != nil {
			log.Warn("could not look at the soaking pods; the next run carries the soak on", "image", m.Image, "left", left, "error", err)
		} else {
			log.Info("soaking: the next run carries the soak on", "image", m.Image, "left", left)
		}
		if left > 0 {
			r.progress(s.Name, fmt.Sprintf("soaking, %s left", left))
		} else {
			r.progress(s.Name, "soak ended: the next run looks once more")
		}
		return OutcomeSoaking, nil
	case soakGone:
		var sup *rollout.SupersededError
		if errors.As(err, &sup) {
			// Someone set another image during the soak: theirs stands,
			// as during a rollout.
			return r.superseded(ctx, s, dec, sup, log)
		}
		log.Warn("soak abandoned: the Deployment is gone", "image", m.Image, "error", err)
		r.progress(s.Name, err.Error())
		return OutcomeNotRun, err
	}
	// soakFailed
	log.Error("soak failed", "image", m.Image, "error", err)
	r.progress(s.Name, "failed: "+err.Error())
	return r.recover(ctx, s, dec, before, &d.Spec.Template, err, log)
}

// pendingSoak is a soak a run watches after every service had its turn: a
// soak ends at a time, not after some work, and its evidence is dated, so
// the services after it need not wait for it (one service's 10-minute soak
// would hold back every deploy after it).
type pendingSoak struct {
	s      config.Service
	dec    Decision
	mark   SoakMark
	before *corev1.PodTemplateSpec // the template before this run's deploy; nil for an earlier run's soak
	log    *slog.Logger
}

// finishSoaks watches the run's soaks, one after another (each ends at its
// own time, within the run's budget), and records how each ended in the
// service's result: a failed soak replaces the outcome and is notified as a
// failed rollout; a passed or pending one only replaces a soak's.
func (r *Runner) finishSoaks(ctx context.Context, runID string, res *Result) {
	for _, p := range r.soaks {
		if ctx.Err() != nil {
			return
		}
		i := slices.IndexFunc(res.Services, func(sr ServiceResult) bool { return sr.Service == p.s.Name })
		if i < 0 {
			continue
		}
		sr := &res.Services[i]
		start := r.Now()
		out, err := r.soak(ctx, p.s, p.dec, p.mark, p.before, p.log)
		sr.Duration += r.Now().Sub(start)
		switch out {
		case OutcomeSoaking:
			if sr.Action == Soak {
				sr.Outcome = out
			}
			continue
		case OutcomeSoaked:
			sr.Soak = SoakPassed
			if sr.Action == Soak {
				sr.Outcome = out
			}
			r.notify(ctx, runID, *sr, nil)
			continue
		case OutcomeRolledBack, OutcomeRollbackFailed, OutcomeFailed:
			sr.Soak = SoakFailed
		}
		sr.Outcome = out
		if err != nil {
			sr.Error = err.Error()
			sr.Forbidden = apierrors.IsForbidden(err)
		}
		p.log.Info("service done", "outcome", sr.Outcome, "duration", sr.Duration)
		r.notify(ctx, runID, *sr, err)
	}
}

// markSoaked records the soak as passed and forgets where a rollback would
// have gone, only while the Deployment still runs the soaked image.
func (r *Runner) markSoaked(ctx context.Context, d *appsv1.Deployment, s config.Service, m SoakMark) error {
	m.Passed = true
	// The first try writes over the Deployment the soak judged; a conflict
	// reads it again, and writes only while it still runs the soaked image.
	reread := false
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if reread {
			var err error
			if d, err = r.getRetried(ctx, s); err != nil {
				return err
			}
			if img, _ := rollout.ContainerImage(&d.Spec.Template, ServiceContainer(d, s)); !image.SameString(img, m.Image) {
				return fmt.Errorf("the Deployment runs %s now", img)
			}
		}
		reread = true
		_, err := rollout.AnnotateIfUnchanged(ctx, r.Kube, d, map[string]string{AnnSoak: mustJSON(m), AnnPreviousRevision: "", AnnSoakBefore: ""})
		return err
	})
}
