package rollout

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The cases of kubectl's TestDeploymentStatusViewerStatus, in its order of
// checks.
func TestEvaluate(t *testing.T) {
	tests := []struct {
		name       string
		generation int64
		replicas   int32
		paused     bool
		status     appsv1.DeploymentStatus
		state      State
		msg        string
	}{
		{name: "spec not observed", generation: 2, replicas: 1, status: appsv1.DeploymentStatus{ObservedGeneration: 1}, state: Progressing,
			msg: "Waiting for deployment spec update to be observed..."},
		{name: "updating", generation: 1, replicas: 3, status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 3, UpdatedReplicas: 1, AvailableReplicas: 3}, state: Progressing,
			msg: `Waiting for deployment "api" rollout to finish: 1 out of 3 new replicas have been updated...`},
		{name: "old replicas terminating", generation: 1, replicas: 1, status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 1, AvailableReplicas: 1}, state: Progressing,
			msg: `Waiting for deployment "api" rollout to finish: 1 old replicas are pending termination...`},
		{name: "not available yet", generation: 1, replicas: 2, status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 1}, state: Progressing,
			msg: `Waiting for deployment "api" rollout to finish: 1 of 2 updated replicas are available...`},
		{name: "complete", generation: 1, replicas: 2, status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}, state: Complete,
			msg: `deployment "api" successfully rolled out`},
		{name: "scaled to zero", generation: 1, replicas: 0, status: appsv1.DeploymentStatus{ObservedGeneration: 1}, state: Complete,
			msg: `deployment "api" successfully rolled out`},
		{name: "progress deadline", generation: 1, replicas: 2, status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 1,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: TimedOutReason}}}, state: Failed,
			msg: `deployment "api" exceeded its progress deadline`},
		{name: "paused", generation: 1, replicas: 2, paused: true, status: appsv1.DeploymentStatus{ObservedGeneration: 1}, state: Paused,
			msg: `deployment "api" is paused`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Generation: tt.generation},
				Spec: appsv1.DeploymentSpec{Replicas: ptr(tt.replicas), Paused: tt.paused}, Status: tt.status}
			got := Evaluate(d)
			if got.State != tt.state || got.Message != tt.msg {
				t.Errorf("Evaluate = %s %q, want %s %q", got.State, got.Message, tt.state, tt.msg)
			}
		})
	}
}

// Messages as containerd and CRI-O word them (kubelet 1.28).
func TestClassify(t *testing.T) {
	tests := []struct {
		reason, msg, image string
		want               Cause
	}{
		{"ErrImagePull", `failed to pull and unpack image "ghcr.io/x/api:v2": failed to resolve reference "ghcr.io/x/api:v2": ghcr.io/x/api:v2: not found`, "ghcr.io/x/api:v2", CauseImage},
		{"ErrImagePull", `rpc error: code = NotFound desc = manifest unknown`, "ghcr.io/x/api:v2", CauseImage},
		{"ErrImagePull", `failed to pull and unpack image "ghcr.io/x/api:v2": failed to resolve reference "ghcr.io/x/api:v2": unexpected status from HEAD request to https://ghcr.io/v2/x/api/manifests/v2: 404 Not Found`, "ghcr.io/x/api:v2", CauseImage},
		// 401/403 at pull: the credentials (an expired imagePullSecret),
		// not the content.
		{"ErrImagePull", `failed to authorize: failed to fetch anonymous token: unexpected status: 401 Unauthorized`, "ghcr.io/x/api:v2", CauseCredentials},
		{"ErrImagePull", `unexpected status from HEAD request to https://ghcr.io/v2/x/api/manifests/v2: 403 Forbidden`, "ghcr.io/x/api:v2", CauseCredentials},
		{"ErrImagePull", `pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed`, "ghcr.io/x/api:v2", CauseCredentials},
		{"ErrImagePull", `unexpected status from HEAD request to https://ghcr.io/v2/x/api/manifests/sha-4031a2b: 503 Service Unavailable`, "ghcr.io/x/api:sha-4031a2b", CauseRegistry},
		{"ErrImagePull", `unexpected status code 429 Too Many Requests`, "ghcr.io/x/api:v2", CauseRegistry},
		{"ErrImagePull", `dial tcp: lookup ghcr.io on 10.43.0.10:53: no such host`, "ghcr.io/x/api:v2", CauseRegistry},
		{"ErrImagePull", `dial tcp 140.82.112.34:443: i/o timeout`, "ghcr.io/x/api:v2", CauseRegistry},
		{"ImagePullBackOff", `read tcp 10.0.0.2:51234->140.82.112.34:443: read: connection reset by peer`, "ghcr.io/x/api:v2", CauseRegistry},
		// The message quotes the reference: words in the image's own name
		// or tag are not the registry's answer (issue 17, item 2).
		{"ErrImagePull", `failed to pull and unpack image "registry.local/team/forbidden-words:flaky-1": failed to resolve reference "registry.local/team/forbidden-words:flaky-1": unexpected status from HEAD request to https://registry.local/v2/team/forbidden-words/manifests/flaky-1: 503 Service Unavailable`, "registry.local/team/forbidden-words:flaky-1", CauseRegistry},
		{"ErrImagePull", `failed to pull and unpack image "ghcr.io/x/api:flaky-fix-access-denied-page": unexpected status from HEAD request: 503 Service Unavailable`, "ghcr.io/x/api:flaky-fix-access-denied-page", CauseRegistry},
		{"ErrImagePull", `pull access denied for registry.local/team/not-found-page, repository does not exist or may require authorization`, "registry.local/team/not-found-page:v1", CauseCredentials},
		{"ErrImagePull", `registry.local/team/timeout-svc:v1: not found`, "registry.local/team/timeout-svc:v1", CauseImage},
		// The same with a bare Docker Hub name, which containerd expands.
		{"ErrImagePull", `failed to pull and unpack image "docker.io/library/denied:1.2": failed to resolve reference "docker.io/library/denied:1.2": docker.io/library/denied:1.2: not found`, "denied:1.2", CauseImage},
		// Unknown: not the image's, on no evidence.
		{"ImagePullBackOff", `Back-off pulling image "ghcr.io/x/api:v2"`, "ghcr.io/x/api:v2", CauseUnknown},
		{"ErrImagePull", `something new the kubelet says`, "ghcr.io/x/api:v2", CauseUnknown},
		{"CreateContainerConfigError", `secret "api-env" not found`, "ghcr.io/x/api:v2", CauseConfig},
		{"CrashLoopBackOff", `back-off 10s restarting failed container`, "ghcr.io/x/api:v2", CauseImage},
		{"InvalidImageName", `Failed to apply default image tag "GHCR.io/x": couldn't parse image reference`, "GHCR.io/x", CauseImage},
	}
	for _, tt := range tests {
		if got := Classify(tt.reason, tt.msg, tt.image); got != tt.want {
			t.Errorf("Classify(%s, %q) = %s, want %s", tt.reason, tt.msg, got, tt.want)
		}
	}
}

// Only the image's own fault is remembered as failed (and excluded from
// the policy); every other cause is retried.
func TestCauseRemembered(t *testing.T) {
	for _, c := range []Cause{CauseImage, CauseRegistry, CauseCredentials, CauseConfig, CauseCluster, CauseSetup, CauseUnknown, ""} {
		if got, want := c.Remembered(), c == CauseImage; got != want {
			t.Errorf("%q.Remembered() = %v, want %v", c, got, want)
		}
	}
}
