// Package rollout answers "is this Deployment's rollout done?" the way
// `kubectl rollout status` does, waits for it with a watch, and restores an
// earlier revision the way `kubectl rollout undo` does.
package rollout

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/autodeploy-dev/autodeploy/internal/image"
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
//
// Unschedulable (no node with room, every node cordoned) gets it too: the
// scheduler retries, a node may come back or be added.
func NeedsGrace(reason string) bool {
	return reason == "ErrImagePull" || reason == "CreateContainerConfigError" || reason == corev1.PodReasonUnschedulable
}

// Cause says who a failed rollout blames: the verdict's subject. Only
// CauseImage is evidence against the image; every other cause is retried
// (issue 17: a quota, a cordoned node, a registry outage or a missing
// credential once marked good images as failed).
type Cause string

const (
	// CauseImage: the image itself is bad: a pull error that says the
	// reference does not exist, a container of the new revision crashing or
	// running without becoming Ready, the health check answering wrong.
	// Remembered as failed (and excluded from the policy under GitOps).
	CauseImage Cause = "image"
	// CauseRegistry: the registry or the network failed the pull (timeout,
	// 429, 5xx, a slow pull).
	CauseRegistry Cause = "registry"
	// CauseCredentials: the registry refused the pull (401, 403, "pull
	// access denied"): the node's credentials (an expired imagePullSecret),
	// not the content.
	CauseCredentials Cause = "credentials"
	// CauseConfig: the pod's configuration is missing (a Secret or
	// ConfigMap not applied yet).
	CauseConfig Cause = "config"
	// CauseCluster: pods of the new revision cannot be created or
	// scheduled: a ResourceQuota, an admission webhook, no node with room
	// (cordoned, full).
	CauseCluster Cause = "cluster"
	// CauseSetup: autodeploy's own setup stopped the check (a health
	// credential that cannot be read).
	CauseSetup Cause = "setup"
	// CauseUnknown: the rollout did not finish and nothing tells why (a
	// timeout without pod evidence, a pull error nobody knows).
	CauseUnknown Cause = "unknown"
)

// Who names the cause in a sentence: "the registry", "the cluster".
func (c Cause) Who() string {
	switch c {
	case CauseImage:
		return "the image"
	case CauseRegistry:
		return "the registry"
	case CauseCredentials:
		return "the registry's credentials (imagePullSecrets)"
	case CauseConfig:
		return "the pod's configuration (a Secret or ConfigMap)"
	case CauseCluster:
		return "the cluster"
	case CauseSetup:
		return "autodeploy's setup"
	}
	return "an unknown cause"
}

// Remembered reports whether a failure with this cause marks the image as
// failed for good (until the policy moves on): only the image's own.
func (c Cause) Remembered() bool { return c == CauseImage }

// Status codes are matched with their text ("503 service unavailable"),
// never alone: a tag like sha-4031a2b would otherwise read as a 403. The
// message is searched without the reference it quotes (pullWords).
//
// Each list holds substrings of the kubelet's pull errors (containerd and
// CRI-O wording, docker's "pull access denied"), checked in this order:
// a refusal names the credentials even when it also says "does not exist"
// (registries answer 401 for a repository they hide), a missing manifest
// is the image's, the rest the registry's or the network's.
var (
	credentialFaults = []string{
		"401 unauthorized", "403 forbidden", "unauthorized", "forbidden", "denied",
		"authorization failed", "failed to authorize", "no basic auth credentials", "authentication required",
	}
	imageFaults = []string{
		"404 not found", "not found", "manifest unknown", "name unknown", "invalid reference",
		"no matching manifest", "repository does not exist", "does not exist",
	}
	registryFaults = []string{
		"too many requests", "toomanyrequests",
		"500 internal server error", "502 bad gateway", "503 service unavailable", "504 gateway timeout",
		"internal server error", "bad gateway", "service unavailable", "gateway timeout",
		"timeout", "timed out", "deadline exceeded", "connection refused", "connection reset",
		"no such host", "network is unreachable", "no route to host", "temporary failure",
		"tls handshake", "unexpected eof", ": eof", "i/o timeout", "server misbehaving",
	}
)

// Classify decides who a pod problem blames, from its reason, the
// kubelet's message (for ImagePullBackOff, the last pull error's) and the
// image the container pulls. A pull error nobody recognises blames no one
// (CauseUnknown): a good image marked bad is never deployed again, while an
// unknown one is only tried again later, with a growing interval.
func Classify(reason, message, img string) Cause {
	switch reason {
	case "CreateContainerConfigError":
		return CauseConfig
	case corev1.PodReasonUnschedulable:
		return CauseCluster
	case "ErrImagePull", "ImagePullBackOff":
		m := pullWords(message, img)
		for _, l := range []struct {
			words []string
			cause Cause
		}{{credentialFaults, CauseCredentials}, {imageFaults, CauseImage}, {registryFaults, CauseRegistry}} {
			for _, f := range l.words {
				if strings.Contains(m, f) {
					return l.cause
				}
			}
		}
		return CauseUnknown
	}
	return CauseImage
}

// pullWords is a pull error in lower case without what names the image:
// quoted strings, URLs, and the reference itself in the spellings the
// kubelet and containerd use (as written, expanded to docker.io/library/,
// the repository alone). What is left is the registry's answer: a
// repository called forbidden-words or a tag flaky-fix-access-denied-page
// must not read as a refusal (issue 17, item 2).
func pullWords(message, img string) string {
	m := strings.ToLower(message)
	var names []string
	if img != "" {
		names = append(names, strings.ToLower(img))
		if r, err := image.Parse(img); err == nil {
			for _, n := range []string{r.String(), r.Name(), r.Repository} {
				names = append(names, strings.ToLower(n))
			}
		}
	}
	// Longest first, so that a reference goes before the repository inside it.
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
	var b strings.Builder
	for _, word := range strings.Fields(m) {
		if strings.Contains(word, "://") {
			continue // a URL spells the repository and the tag out
		}
		b.WriteString(word)
		b.WriteByte(' ')
	}
	m = quoted.ReplaceAllString(b.String(), `"" `)
	for _, n := range names {
		if n != "" {
			m = strings.ReplaceAll(m, n, "<image>")
		}
	}
	// What follows a replaced repository up to the next separator is its
	// tag or digest.
	return afterImage.ReplaceAllString(m, "<image>")
}

var (
	quoted     = regexp.MustCompile(`"[^"]*"`)
	afterImage = regexp.MustCompile(`<image>[:@][^\s,;]*?(:\s|[,;]|\s|$)`)
)

// PodProblem is a pod that cannot become ready.
type PodProblem struct {
	Pod       string
	Container string
	Reason    string
	Message   string
}

func (p PodProblem) String() string {
	s := fmt.Sprintf("pod %s: container %s is in %s", p.Pod, p.Container, p.Reason)
	if p.Container == "" {
		s = fmt.Sprintf("pod %s is %s", p.Pod, p.Reason)
	}
	if p.Message != "" {
		s += ": " + p.Message
	}
	return s
}

// Problem returns the first container (init containers first) of pod
// waiting for one of FatalReasons, or a pod the scheduler found no node for
// (Unschedulable: Container is "").
func Problem(pod *corev1.Pod) (PodProblem, bool) {
	if c, ok := unschedulable(pod); ok {
		return PodProblem{Pod: pod.Name, Reason: c.Reason, Message: c.Message}, true
	}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range list {
			if w := cs.State.Waiting; w != nil && FatalReasons[w.Reason] {
				return PodProblem{Pod: pod.Name, Container: cs.Name, Reason: w.Reason, Message: w.Message}, true
			}
		}
	}
	return PodProblem{}, false
}
