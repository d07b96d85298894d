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
		reason, msg string
		want        Cause
	}{
		{"ErrImagePull", `failed to pull and unpack image "ghcr.io/x/api:v2": failed to resolve reference "ghcr.io/x/api:v2": ghcr.io/x/api:v2: not found`, CauseImage},
		{"ErrImagePull", `rpc error: code = NotFound desc = manifest unknown`, CauseImage},
		{"ErrImagePull", `failed to authorize: failed to fetch anonymous token: unexpected status: 401 Unauthorized`, CauseImage},
		{"ErrImagePull", `pull access denied, repository does not exist or may require authorization`, CauseImage},
		{"ErrImagePull", `unexpected status from HEAD request to https://ghcr.io/v2/x/api/manifests/sha-4031a2b: 503 Service Unavailable`, CauseRegistry},
		{"ErrImagePull", `unexpected status code 429 Too Many Requests`, CauseRegistry},
		{"ErrImagePull", `dial tcp: lookup ghcr.io on 10.43.0.10:53: no such host`, CauseRegistry},
		{"ErrImagePull", `dial tcp 140.82.112.34:443: i/o timeout`, CauseRegistry},
		{"ImagePullBackOff", `read tcp 10.0.0.2:51234->140.82.112.34:443: read: connection reset by peer`, CauseRegistry},
		// Unknown: taken as passing, never as a bad image.
		{"ImagePullBackOff", `Back-off pulling image "ghcr.io/x/api:v2"`, CauseRegistry},
		{"CreateContainerConfigError", `secret "api-env" not found`, CauseConfig},
		{"CrashLoopBackOff", `back-off 10s restarting failed container`, CauseImage},
		{"InvalidImageName", `Failed to apply default image tag "GHCR.io/x": couldn't parse image reference`, CauseImage},
	}
	for _, tt := range tests {
		if got := Classify(tt.reason, tt.msg); got != tt.want {
			t.Errorf("Classify(%s, %q) = %s, want %s", tt.reason, tt.msg, got, tt.want)
		}
	}
}
