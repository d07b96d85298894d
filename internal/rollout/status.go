// Package rollout answers "is this Deployment's rollout done?" the way
// `kubectl rollout status` does, waits for it with a watch, and restores an
// earlier revision the way `kubectl rollout undo` does.
package rollout

import (
	"fmt"
	"strings"

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

// FatalReasons are the container waiting reasons a rollout watches for in
// its new pods. Each counts at once, except those NeedsGrace names.
var FatalReasons = map[string]bool{
	"ErrImagePull":               true,
	"ImagePullBackOff":           true,
	"InvalidImageName":           true,
	"CreateContainerConfigError": true,
	"CrashLoopBackOff":           true,
}

// NeedsGrace: reasons that often pass by themselves, so they count only
// once they have lasted WaitOptions.Grace. A first ErrImagePull is retried by
// the kubelet (a failure that persists becomes ImagePullBackOff, which counts
// at once); CreateContainerConfigError usually means a Secret or ConfigMap
// that is applied a moment later.
func NeedsGrace(reason string) bool {
	return reason == "ErrImagePull" || reason == "CreateContainerConfigError"
}

// Cause says what a failed rollout tells about its image.
type Cause string

const (
	// CauseImage: the image itself is bad (missing, refused, crashing, not
	// becoming ready): remember it and do not try it again.
	CauseImage Cause = "image"
	// CauseRegistry: the registry or the network failed the pull (timeout,
	// 429, 5xx): roll back, but try the image again later.
	CauseRegistry Cause = "registry"
	// CauseConfig: the pod's configuration is missing (a Secret or
	// ConfigMap): not the image's fault, try it again later.
	CauseConfig Cause = "config"
)

// Remembered reports whether a failure with this cause marks the image as
// failed for good (until the policy moves on).
func (c Cause) Remembered() bool { return c == CauseImage || c == "" }

// Status codes are matched with their text ("503 service unavailable"),
// never alone: a tag like sha-4031a2b would otherwise read as a 403.
//
// registryFaults are substrings of the kubelet's pull errors (containerd
// and CRI-O wording) that blame the registry or the network rather than
// the image. Checked after imageFaults: "404 Not Found" is the image's.
var registryFaults = []string{
	"too many requests", "toomanyrequests",
	"500 internal server error", "502 bad gateway", "503 service unavailable", "504 gateway timeout",
	"internal server error", "bad gateway", "service unavailable", "gateway timeout",
	"timeout", "timed out", "deadline exceeded", "connection refused", "connection reset",
	"no such host", "network is unreachable", "no route to host", "temporary failure",
	"tls handshake", "unexpected eof", ": eof", "i/o timeout", "server misbehaving",
}

// imageFaults blame the reference itself: it does not exist, or this node
// may not pull it.
var imageFaults = []string{
	"not found", "manifest unknown", "name unknown", "unauthorized",
	"denied", "forbidden", "invalid reference", "no matching manifest",
	"repository does not exist", "does not exist",
}

// Classify decides who a pod problem blames, from its reason and the
// kubelet's message (for ImagePullBackOff, the last pull error's). An
// unknown pull error is taken as the registry's: a good image marked bad is
// never deployed again, while a bad image taken as a registry fault is only
// tried again later, with a growing interval.
func Classify(reason, message string) Cause {
	switch reason {
	case "CreateContainerConfigError":
		return CauseConfig
	case "ErrImagePull", "ImagePullBackOff":
		m := strings.ToLower(message)
		for _, f := range imageFaults {
			if strings.Contains(m, f) {
				return CauseImage
			}
		}
		for _, f := range registryFaults {
			if strings.Contains(m, f) {
				return CauseRegistry
			}
		}
		return CauseRegistry
	}
	return CauseImage
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

// Problem returns the first container (init containers first) of pod
// waiting for one of FatalReasons.
func Problem(pod *corev1.Pod) (PodProblem, bool) {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range list {
			if w := cs.State.Waiting; w != nil && FatalReasons[w.Reason] {
				return PodProblem{Pod: pod.Name, Container: cs.Name, Reason: w.Reason, Message: w.Message}, true
			}
		}
	}
	return PodProblem{}, false
}
