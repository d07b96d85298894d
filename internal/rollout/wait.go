package rollout

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// FailedError is a rollout that cannot succeed: a new pod in one of
// FatalReasons, or the progress deadline exceeded.
type FailedError struct {
	Deployment string
	Problem    *PodProblem // nil for a progress deadline
	Message    string
}

func (e *FailedError) Error() string {
	if e.Problem != nil {
		return e.Problem.String()
	}
	return e.Message
}

// ErrPausedWait is returned when the Deployment is paused while waiting:
// it would never finish.
var ErrPausedWait = errors.New("deployment is paused")

// Wait blocks until the rollout of d is complete, fails, or ctx ends (the
// caller sets the timeout). It watches the Deployment and its pods instead
// of polling, so it reacts within one event of a change, and fails fast on a
// new pod stuck in ImagePullBackOff, CrashLoopBackOff and the like.
// progress, if not nil, gets each new kubectl-style status message.
func Wait(ctx context.Context, c kubernetes.Interface, namespace, name string, progress func(string)) (*appsv1.Deployment, error) {
	w := &waiter{c: c, ns: namespace, name: name, progress: progress}
	for {
		done, err := w.round(ctx)
		if done || err != nil {
			return w.d, err
		}
	}
}

type waiter struct {
	c        kubernetes.Interface
	ns, name string
	progress func(string)

	d       *appsv1.Deployment
	newHash string // pod-template-hash of the new ReplicaSet, once known
	lastMsg string
}

// round lists the current state, then watches from there until done or the
// watches end (API servers close watches after a while; a new round
// resumes from a fresh list, so nothing between the two is missed).
func (w *waiter) round(ctx context.Context) (bool, error) {
	d, err := w.c.AppsV1().Deployments(w.ns).Get(ctx, w.name, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("deployment %s/%s: %w", w.ns, w.name, err)
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
		return false, err
	}
	for i := range pods.Items {
		if err := w.onPod(&pods.Items[i]); err != nil {
			return false, err
		}
	}
	dw, err := w.c.AppsV1().Deployments(w.ns).Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", w.name).String(),
		ResourceVersion: d.ResourceVersion,
	})
	if err != nil {
		return false, err
	}
	defer dw.Stop()
	pw, err := w.c.CoreV1().Pods(w.ns).Watch(ctx, metav1.ListOptions{LabelSelector: sel.String(), ResourceVersion: pods.ResourceVersion})
	if err != nil {
		return false, err
	}
	defer pw.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case ev, ok := <-dw.ResultChan():
			if !ok || ev.Type == watch.Error {
				return false, nil
			}
			if ev.Type == watch.Deleted {
				return false, fmt.Errorf("deployment %s/%s was deleted during the rollout", w.ns, w.name)
			}
			if d, ok := ev.Object.(*appsv1.Deployment); ok {
				if done, err := w.onDeployment(ctx, d); done || err != nil {
					return done, err
				}
			}
		case ev, ok := <-pw.ResultChan():
			if !ok || ev.Type == watch.Error {
				return false, nil
			}
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type != watch.Deleted {
				if err := w.onPod(p); err != nil {
					return false, err
				}
			}
		}
	}
}

func (w *waiter) onDeployment(ctx context.Context, d *appsv1.Deployment) (bool, error) {
	w.d = d
	st := Evaluate(d)
	if st.Message != w.lastMsg && w.progress != nil {
		w.progress(st.Message)
	}
	w.lastMsg = st.Message
	switch st.State {
	case Complete:
		return true, nil
	case Failed:
		return false, &FailedError{Deployment: d.Name, Message: st.Message}
	case Paused:
		return false, fmt.Errorf("deployment %s/%s: %w", d.Namespace, d.Name, ErrPausedWait)
	}
	if w.newHash == "" && d.Status.ObservedGeneration >= d.Generation {
		owned, err := ListOwned(ctx, w.c, d)
		if err != nil {
			return false, err
		}
		if rs := Current(d, owned); rs != nil {
			w.newHash = rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
		}
	}
	return false, nil
}

// onPod fails the wait when a pod of the new ReplicaSet cannot start. Pods
// of old ReplicaSets are ignored: their trouble is not this rollout's.
func (w *waiter) onPod(p *corev1.Pod) error {
	if w.newHash == "" || p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != w.newHash || p.DeletionTimestamp != nil {
		return nil
	}
	if prob, bad := FatalProblem(p); bad {
		return &FailedError{Deployment: w.name, Problem: &prob}
	}
	return nil
}
