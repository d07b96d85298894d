// Package rollout answers "is this Deployment's rollout done?" the way
// `kubectl rollout status` does, waits for it with a watch, and restores an
// earlier revision the way `kubectl rollout undo` does.
package rollout

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// State is the phase of a rollout.
type State string

const (
	Complete    State = "complete"
	Progressing State = "progressing"
	Failed      State = "failed" // ProgressDeadlineExceeded
	Paused      State = "paused"
)

// TimedOutReason is the condition reason the deployment controller sets when
// progressDeadlineSeconds passes without progress.
const TimedOutReason = "ProgressDeadlineExceeded"

// Status is the verdict on one Deployment, with kubectl's message.
type Status struct {
	State   State
	Message string
}

// Evaluate judges d with kubectl's DeploymentStatusViewer rules, in its
// order: the controller has seen the latest spec; the progress deadline has
// not passed; every replica is updated; no old replica is left; every
// updated replica is available. It makes no API call.
func Evaluate(d *appsv1.Deployment) Status {
	if d.Generation > d.Status.ObservedGeneration {
		return Status{Progressing, "Waiting for deployment spec update to be observed..."}
	}
	if d.Spec.Paused {
		return Status{Paused, fmt.Sprintf("deployment %q is paused", d.Name)}
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == TimedOutReason {
			return Status{Failed, fmt.Sprintf("deployment %q exceeded its progress deadline", d.Name)}
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	switch {
	case s.UpdatedReplicas < want:
		return Status{Progressing, fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...", d.Name, s.UpdatedReplicas, want)}
	case s.Replicas > s.UpdatedReplicas:
		return Status{Progressing, fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...", d.Name, s.Replicas-s.UpdatedReplicas)}
	case s.AvailableReplicas < s.UpdatedReplicas:
		return Status{Progressing, fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...", d.Name, s.AvailableReplicas, s.UpdatedReplicas)}
	}
	return Status{Complete, fmt.Sprintf("deployment %q successfully rolled out", d.Name)}
}

// FatalReasons are container waiting reasons that will not fix themselves
// within a rollout timeout; seeing one in a new pod fails the rollout at once
// instead of waiting minutes for the deadline.
var FatalReasons = map[string]bool{
	"ErrImagePull":               true,
	"ImagePullBackOff":           true,
	"InvalidImageName":           true,
	"CreateContainerConfigError": true,
	"CrashLoopBackOff":           true,
}

// PodProblem is a pod that cannot become ready.
type PodProblem struct {
	Pod       string
	Container string
	Reason    string
	Message   string
}

func (p PodProblem) String() string {
	s := fmt.Sprintf("pod %s: container %s is in %s", p.Pod, p.Container, p.Reason)
	if p.Message != "" {
		s += ": " + p.Message
	}
	return s
}

// FatalProblem returns the first container (init containers first) of pod
// waiting for one of FatalReasons.
func FatalProblem(pod *corev1.Pod) (PodProblem, bool) {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range list {
			if w := cs.State.Waiting; w != nil && FatalReasons[w.Reason] {
				return PodProblem{Pod: pod.Name, Container: cs.Name, Reason: w.Reason, Message: w.Message}, true
			}
		}
	}
	return PodProblem{}, false
}
