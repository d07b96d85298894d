package rollout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// FailedError is a verdict: the rollout cannot succeed. A new pod is stuck
// in one of the problem reasons (see Classify), or the progress deadline
// passed.
type FailedError struct {
	Deployment string
	Problem    *PodProblem // nil for a progress deadline
	Message    string
	// Cause says who is to blame: the image, or something that may pass
	// (the registry, a Secret not there yet, the cluster). Never the image
	// without evidence of it (see Evidence).
	Cause Cause
	// Timeout: the wait's context reached its deadline; Cause and Message
	// are what the new revision showed by then. Unwraps to
	// context.DeadlineExceeded, so a caller can tell its own deadline (the
	// run's budget) from the rollout's.
	Timeout bool
	// Evidence is what the cluster itself said, in its own words (the
	// kubelet's pull error, the quota's refusal, the scheduler's "0/2 nodes
	// are available"), for status and the retry mark.
	Evidence string
}

func (e *FailedError) Error() string {
	if e.Problem != nil {
		return e.Problem.String()
	}
	return e.Message
}

func (e *FailedError) Unwrap() error {
	if e.Timeout {
		return context.DeadlineExceeded
	}
	return nil
}

// SupersededError ends a wait whose revision is no longer the Deployment's:
// someone else changed the pod template during the rollout. It is not a
// verdict on the image that was rolled out.
type SupersededError struct {
	Deployment string
	// By is the field manager that wrote the new template (kubectl-set,
	// kustomize-controller...), "" when managedFields do not tell.
	By string
	// Image is the container's image in the new template, if known.
	Image string
}

func (e *SupersededError) Error() string {
	by := "someone else"
	if e.By != "" {
		by = e.By
	}
	s := fmt.Sprintf("deployment %s was changed by %s during the rollout", e.Deployment, by)
	if e.Image != "" {
		s += " (image " + e.Image + ")"
	}
	return s
}

// UnobservedError ends a wait that ran out of time while the API could not
// be read (an API server restart, a network cut): nothing was learnt about
// the rollout, so it is no verdict either.
type UnobservedError struct {
	Err error // the last API error
}

func (e *UnobservedError) Error() string {
	return "the rollout could not be observed: " + e.Err.Error()
}
func (e *UnobservedError) Unwrap() error { return e.Err }

// ErrDeleted ends a wait whose Deployment was deleted: nothing is left to
// judge or to roll back.
var ErrDeleted = errors.New("was deleted during the rollout")

// ErrPausedWait is returned when the Deployment is paused while waiting:
// it would never finish.
var ErrPausedWait = errors.New("deployment is paused")

// DefaultGrace is how long a pod may show ErrImagePull (without reaching
// ImagePullBackOff) or CreateContainerConfigError before it counts. Both
// are often transient: the kubelet retries a pull that hit a registry
// hiccup, and a Secret or ConfigMap applied a few seconds after the
// Deployment (a kustomization's order) lets the container start.
const DefaultGrace = 30 * time.Second

// WaitOptions tune Wait.
type WaitOptions struct {
	// Template is the pod template the caller's patch produced. When set,
	// the wait is for that revision only, as `kubectl rollout status
	// --revision` is: if the Deployment's template changes, it ends with a
	// *SupersededError instead of judging someone else's rollout.
	Template *corev1.PodTemplateSpec
	// Container names the container whose image a SupersededError reports.
	Container string
	// Grace overrides DefaultGrace (tests).
	Grace time.Duration
	// Progress, if not nil, gets each new kubectl-style status message.
	Progress func(string)
}

// Wait blocks until the rollout of the Deployment is complete, fails, or
// ctx ends (the caller sets the timeout). It watches the Deployment and its
// pods instead of polling, so it reacts within one event of a change, and
// fails fast on a new pod stuck in ImagePullBackOff, CrashLoopBackOff and
// the like.
//
// API errors and broken watches are not verdicts: like client-go's
// UntilWithSync, it lists and watches again, with a backoff, until ctx
// ends; if it ends while the API was failing, the error is an
// *UnobservedError. RBAC refusals, a deleted Deployment and refused
// credentials end the wait at once.
func Wait(ctx context.Context, c kubernetes.Interface, namespace, name string, o WaitOptions) (*appsv1.Deployment, error) {
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	w := &waiter{c: c, ns: namespace, name: name, o: o, seen: map[string]seenProblem{}, pods: map[string]*corev1.Pod{}}
	backoff := retryBackoff{min: 200 * time.Millisecond, max: 5 * time.Second}
	var lastAPIErr error
	for {
		start := time.Now()
		done, err := w.round(ctx)
		if done {
			return w.d, nil
		}
		if err == nil { // the watches ended: list again
			lastAPIErr = nil
			if time.Since(start) > time.Second {
				backoff.reset()
				continue
			}
			// Watches that end as soon as they start (a server shedding
			// load) must not turn this into a busy loop.
			select {
			case <-ctx.Done():
				return w.d, w.ended(ctx)
			case <-time.After(backoff.next()):
			}
			continue
		}
		if ctx.Err() != nil {
			if lastAPIErr != nil {
				return w.d, &UnobservedError{Err: lastAPIErr}
			}
			return w.d, w.ended(ctx)
		}
		if !retryable(err) {
			return w.d, err
		}
		lastAPIErr = err
		if w.o.Progress != nil {
			w.o.Progress("API error, retrying: " + err.Error())
		}
		select {
		case <-ctx.Done():
			return w.d, &UnobservedError{Err: lastAPIErr}
		case <-time.After(backoff.next()):
		}
	}
}

// apiError marks an error of a request to the API server, as opposed to a
// verdict on the rollout.
type apiError struct{ err error }

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

// retryable: an API error of the wait's own requests that may pass.
func retryable(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && Transient(err)
}

// Transient reports whether an API error may pass by asking again: not a
// refusal (RBAC, credentials), a missing object, or a request the server
// rejects as it is (bad, invalid, conflicting), which will not pass by
// waiting.
func Transient(err error) bool {
	return !apierrors.IsForbidden(err) && !apierrors.IsUnauthorized(err) && !apierrors.IsNotFound(err) &&
		!apierrors.IsBadRequest(err) && !apierrors.IsInvalid(err) && !apierrors.IsConflict(err)
}

type retryBackoff struct{ min, max, cur time.Duration }

func (b *retryBackoff) reset() { b.cur = 0 }

func (b *retryBackoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else if b.cur *= 2; b.cur > b.max {
		b.cur = b.max
	}
	return b.cur
}

type waiter struct {
	c        kubernetes.Interface
	ns, name string
	o        WaitOptions

	d       *appsv1.Deployment
	newHash string // pod-template-hash of the new ReplicaSet, once known
	lastMsg string
	// pods are the latest copies of the Deployment's pods: a problem seen
	// before the new ReplicaSet was known is judged once it is.
	pods map[string]*corev1.Pod
	// seen remembers, per pod, when a problem that needs a grace was first
	// seen and the last pull error message (ImagePullBackOff's own message
	// does not say why the pull failed).
	seen map[string]seenProblem
}

type seenProblem struct {
	reason  string
	since   time.Time
	pullMsg string
}

func wrapAPI(what string, err error) error {
	return &apiError{fmt.Errorf("%s: %w", what, err)}
}

// round lists the current state, then watches from there until done or the
// watches end (API servers close watches after a while; a new round
// resumes from a fresh list, so nothing between the two is missed).
func (w *waiter) round(ctx context.Context) (bool, error) {
	d, err := w.c.AppsV1().Deployments(w.ns).Get(ctx, w.name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return false, fmt.Errorf("deployment %s/%s %w", w.ns, w.name, ErrDeleted)
		}
		return false, wrapAPI(fmt.Sprintf("deployment %s/%s", w.ns, w.name), err)
	}
	if done, err := w.onDeployment(ctx, d); done || err != nil {
		return done, err
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return false, err
	}
	pods, err := w.c.CoreV1().Pods(w.ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return false, wrapAPI("list pods", err)
	}
	w.pods = map[string]*corev1.Pod{}
	for i := range pods.Items {
		if err := w.onPod(ctx, &pods.Items[i]); err != nil {
			return false, err
		}
	}
	dw, err := w.c.AppsV1().Deployments(w.ns).Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", w.name).String(),
		ResourceVersion: d.ResourceVersion,
	})
	if err != nil {
		return false, wrapAPI("watch deployment", err)
	}
	defer dw.Stop()
	pw, err := w.c.CoreV1().Pods(w.ns).Watch(ctx, metav1.ListOptions{LabelSelector: sel.String(), ResourceVersion: pods.ResourceVersion})
	if err != nil {
		return false, wrapAPI("watch pods", err)
	}
	defer pw.Stop()
	for {
		var graceC <-chan time.Time
		var timer *time.Timer
		if t := w.nextGraceEnd(); !t.IsZero() {
			timer = time.NewTimer(time.Until(t))
			graceC = timer.C
		}
		stop := func() {
			if timer != nil {
				timer.Stop()
			}
		}
		select {
		case <-ctx.Done():
			stop()
			return false, ctx.Err()
		case <-graceC:
			// A problem outlived its grace: list again, which judges it.
			return false, nil
		case ev, ok := <-dw.ResultChan():
			stop()
			if !ok || ev.Type == watch.Error {
				return false, nil
			}
			if ev.Type == watch.Deleted {
				return false, fmt.Errorf("deployment %s/%s %w", w.ns, w.name, ErrDeleted)
			}
			if d, ok := ev.Object.(*appsv1.Deployment); ok {
				if done, err := w.onDeployment(ctx, d); done || err != nil {
					return done, err
				}
			}
		case ev, ok := <-pw.ResultChan():
			stop()
			if !ok || ev.Type == watch.Error {
				return false, nil
			}
			if p, ok := ev.Object.(*corev1.Pod); ok {
				if ev.Type == watch.Deleted {
					delete(w.pods, p.Name)
					delete(w.seen, p.Name)
					continue
				}
				if err := w.onPod(ctx, p); err != nil {
					return false, err
				}
			}
		}
	}
}

func (w *waiter) onDeployment(ctx context.Context, d *appsv1.Deployment) (bool, error) {
	w.d = d
	if w.o.Template != nil && !EqualIgnoreHash(&d.Spec.Template, w.o.Template) {
		img, _ := ContainerImage(&d.Spec.Template, w.o.Container)
		return false, &SupersededError{Deployment: d.Namespace + "/" + d.Name, By: TemplateWriter(d, w.o.Container), Image: img}
	}
	st := Evaluate(d)
	if st.Message != w.lastMsg && w.o.Progress != nil {
		w.o.Progress(st.Message)
	}
	w.lastMsg = st.Message
	switch st.State {
	case Complete:
		return true, nil
	case Failed:
		// The controller's deadline says only that nothing progressed: the
		// pods say why.
		cause, why, ev := w.evidence()
		return false, &FailedError{Deployment: d.Name, Message: st.Message + ": " + why, Cause: cause, Evidence: ev}
	case Paused:
		return false, fmt.Errorf("deployment %s/%s: %w", d.Namespace, d.Name, ErrPausedWait)
	}
	if err := w.judgeCluster(d); err != nil {
		return false, err
	}
	if w.newHash == "" && d.Status.ObservedGeneration >= d.Generation {
		owned, err := ListOwned(ctx, w.c, d)
		if err != nil {
			return false, wrapAPI("list replicasets", err)
		}
		if rs := Current(d, owned); rs != nil {
			w.newHash = rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
			// A pod stuck since before the new ReplicaSet was known sends
			// no more events: judge it now.
			for _, p := range w.pods {
				if err := w.onPod(ctx, p); err != nil {
					return false, err
				}
			}
		}
	}
	return false, nil
}

// onPod fails the wait when a pod of the new ReplicaSet cannot start. Pods
// of old ReplicaSets are ignored: their trouble is not this rollout's.
func (w *waiter) onPod(ctx context.Context, p *corev1.Pod) error {
	w.pods[p.Name] = p
	if w.newHash == "" || p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != w.newHash || p.DeletionTimestamp != nil {
		return nil
	}
	prob, ok := Problem(p)
	if !ok {
		delete(w.seen, p.Name)
		return nil
	}
	s := w.seen[p.Name]
	if prob.Reason == "ErrImagePull" {
		s.pullMsg = prob.Message
	}
	if s.reason != prob.Reason {
		s.reason, s.since = prob.Reason, time.Now()
	}
	w.seen[p.Name] = s
	if NeedsGrace(prob.Reason) && time.Since(s.since) < w.o.Grace {
		return nil
	}
	why := prob.Message
	if prob.Reason == "ImagePullBackOff" {
		why = s.pullMsg
		if why == "" {
			var err error
			if why, err = w.lastPullFailure(ctx, p); err != nil {
				// Unknown, so taken as passing (see Classify); the refusal
				// shows in the error.
				prob.Message += " (why the pull failed is unknown: events could not be read: " + err.Error() + ")"
			}
		}
		if why != "" {
			prob.Message = why
		}
	}
	return &FailedError{Deployment: w.name, Problem: &prob, Cause: Classify(prob.Reason, why, w.podImage(p, prob.Container)), Evidence: prob.Message}
}

// replicaFailureKey keys the Deployment's ReplicaFailure condition in seen,
// beside the pods: it gets the same grace.
const replicaFailureKey = "\x00deployment"

// judgeCluster fails the wait once the controller could not create the new
// revision's pods for the grace (a ResourceQuota, an admission webhook: the
// ReplicaFailure condition, with the API server's refusal as its message).
// The cluster's fault, not the image's: it never ran.
func (w *waiter) judgeCluster(d *appsv1.Deployment) error {
	c := replicaFailure(d)
	if c == nil {
		delete(w.seen, replicaFailureKey)
		return nil
	}
	s, ok := w.seen[replicaFailureKey]
	if !ok {
		s = seenProblem{reason: string(appsv1.DeploymentReplicaFailure), since: time.Now()}
		w.seen[replicaFailureKey] = s
	}
	if time.Since(s.since) < w.o.Grace {
		return nil
	}
	return &FailedError{Deployment: w.name, Cause: CauseCluster, Evidence: c.Message,
		Message: fmt.Sprintf("deployment %q cannot create the new pods (%s): %s", d.Name, c.Reason, c.Message)}
}

func replicaFailure(d *appsv1.Deployment) *appsv1.DeploymentCondition {
	if d == nil {
		return nil
	}
	for i, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

// ended is the error of a wait whose context ended: the caller's
// cancellation as it is, a deadline as a verdict on what the new revision
// showed by then (Timeout, see evidence).
func (w *waiter) ended(ctx context.Context) error {
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ctx.Err()
	}
	cause, why, ev := w.evidence()
	return &FailedError{Deployment: w.name, Cause: cause, Message: why, Evidence: ev, Timeout: true}
}

// evidence says who a rollout that did not finish blames, from what the
// new revision's pods and the Deployment show: a container running without
// becoming Ready is the image's (its readiness probe fails); pods that
// cannot be created or scheduled are the cluster's; anything else (a pull
// still going on, no pod at all, nothing wrong to be seen) blames no one.
func (w *waiter) evidence() (cause Cause, why, evidence string) {
	var cluster, clusterMsg, other string
	for _, name := range slices.Sorted(maps.Keys(w.pods)) {
		p := w.pods[name]
		if w.newHash == "" || p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != w.newHash || p.DeletionTimestamp != nil {
			continue
		}
		if c, ok := unschedulable(p); ok {
			cluster, clusterMsg = fmt.Sprintf("pod %s cannot be scheduled: %s", p.Name, c.Message), c.Message
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			switch {
			case cs.State.Running != nil && !cs.Ready:
				return CauseImage, fmt.Sprintf("pod %s: container %s is running but not Ready (its readiness probe fails)", p.Name, cs.Name), ""
			case cs.State.Waiting != nil && other == "":
				other = fmt.Sprintf("pod %s: container %s is still %s", p.Name, cs.Name, cs.State.Waiting.Reason)
				if cs.State.Waiting.Reason == "ContainerCreating" {
					other += " (pulling its image or mounting its volumes)"
				}
			}
		}
	}
	switch c := replicaFailure(w.d); {
	case c != nil:
		return CauseCluster, fmt.Sprintf("the new pods cannot be created (%s): %s", c.Reason, c.Message), c.Message
	case cluster != "":
		return CauseCluster, cluster, clusterMsg
	case other != "":
		return CauseUnknown, other, ""
	case !w.hasNewPod():
		return CauseUnknown, "no pod of the new revision was created", ""
	}
	return CauseUnknown, "the new revision's pods show no problem", ""
}

func (w *waiter) hasNewPod() bool {
	for _, p := range w.pods {
		if w.newHash != "" && p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == w.newHash {
			return true
		}
	}
	return false
}

// unschedulable returns a pending pod's PodScheduled condition when the
// scheduler found no node for it.
func unschedulable(p *corev1.Pod) (corev1.PodCondition, bool) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return c, true
		}
	}
	return corev1.PodCondition{}, false
}

// nextGraceEnd is when the earliest graced problem stops being forgiven.
func (w *waiter) nextGraceEnd() time.Time {
	var t time.Time
	for _, s := range w.seen {
		if NeedsGrace(s.reason) || s.reason == string(appsv1.DeploymentReplicaFailure) {
			if end := s.since.Add(w.o.Grace); t.IsZero() || end.Before(t) {
				t = end
			}
		}
	}
	return t
}

// lastPullFailure reads why the kubelet could not pull the pod's image from
// its newest "Failed" event, as `kubectl describe pod` shows it; "" if there
// is none.
func (w *waiter) lastPullFailure(ctx context.Context, p *corev1.Pod) (string, error) {
	sel := fields.Set{"involvedObject.name": p.Name, "involvedObject.uid": string(p.UID), "reason": "Failed"}.AsSelector()
	evs, err := w.c.CoreV1().Events(w.ns).List(ctx, metav1.ListOptions{FieldSelector: sel.String()})
	if err != nil {
		return "", err
	}
	var best *corev1.Event
	for i := range evs.Items {
		e := &evs.Items[i]
		if best == nil || eventTime(e).After(eventTime(best)) {
			best = e
		}
	}
	if best == nil {
		return "", nil
	}
	return best.Message, nil
}

func eventTime(e *corev1.Event) time.Time {
	if !e.LastTimestamp.IsZero() {
		return e.LastTimestamp.Time
	}
	if !e.EventTime.IsZero() {
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// podImage is the image the pod's container (init containers included)
// pulls: what a pull error quotes.
func (w *waiter) podImage(p *corev1.Pod, container string) string {
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range list {
			if c.Name == container {
				return c.Image
			}
		}
	}
	return ""
}
