package deploy

import (
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
)

const repo = "ghcr.io/team-mercurious/api-gateway"

func svc() config.Service {
	return config.Service{Name: "api-gateway", Namespace: "apps", Deployment: "api-gateway", PolicyNamespace: "flux-system", PolicyName: "api-gateway", RolloutTimeout: time.Minute, AutoRollback: true}
}

func dep(img string, rev int64, mut ...func(*appsv1.Deployment)) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api-gateway", Namespace: "apps", UID: types.UID("dep-uid"),
			Annotations: map[string]string{"deployment.kubernetes.io/revision": itoa(rev)}},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "api-gateway"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "api-gateway", Image: img}}},
		}},
	}
	for _, m := range mut {
		m(d)
	}
	return d
}

// rs is a ReplicaSet of dep's template with img, at revision rev (and the
// revision history a rollback leaves).
func rs(d *appsv1.Deployment, img string, rev int64, history string) *appsv1.ReplicaSet {
	r := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
		Name: "api-gateway-" + itoa(rev), Namespace: "apps",
		Annotations:     map[string]string{"deployment.kubernetes.io/revision": itoa(rev)},
		OwnerReferences: []metav1.OwnerReference{{UID: d.UID, Controller: ptr(true), Kind: "Deployment", Name: d.Name}},
	}}
	if history != "" {
		r.Annotations["deployment.kubernetes.io/revision-history"] = history
	}
	r.Spec.Template = *d.Spec.Template.DeepCopy()
	r.Spec.Template.Spec.Containers[0].Image = img
	r.Spec.Template.Labels["pod-template-hash"] = "h" + itoa(rev)
	return r
}

// soakMark marks d verified at 10:00 with a 10-minute soak of tag.
func soakMark(tag string, passed bool) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		d.Annotations[AnnVerified] = "true"
		d.Annotations[AnnDeployedImage] = repo + ":" + tag
		d.Annotations[AnnPreviousRevision] = "1"
		d.Annotations[AnnSoak] = mustJSON(SoakMark{Image: repo + ":" + tag, VerifiedAt: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 25, 10, 10, 0, 0, time.UTC), Passed: passed})
	}
}

func pol(latest string, ready bool) *flux.Policy {
	return &flux.Policy{Namespace: "flux-system", Name: "api-gateway", Latest: latest, Ready: ready, Message: "msg"}
}

func TestPlan(t *testing.T) {
	d1 := dep(repo+":sha-aaa", 1)
	tests := []struct {
		name       string
		in         Input
		action     Action
		target     string
		problem    bool
		reasonPart string
		staleMarks bool
	}{
		{name: "up to date", in: Input{Service: svc(), Deployment: d1, Policy: pol(repo+":sha-aaa", true)}, action: UpToDate, reasonPart: "running the policy's latest image"},
		{name: "new image", in: Input{Service: svc(), Deployment: d1, Policy: pol(repo+":sha-bbb", true)}, action: Deploy, target: repo + ":sha-bbb", reasonPart: "the policy selected a new image"},
		{name: "implicit docker hub is the same image",
			in:     Input{Service: svc(), Deployment: dep("nginx:1.27", 1), Policy: pol("docker.io/library/nginx:1.27", true)},
			action: UpToDate, reasonPart: "running the policy's latest image"},
		{name: "digest pinned deployment, same tag", in: Input{Service: svc(), Deployment: dep(repo+":v1@sha256:"+strings.Repeat("a", 64), 1), Policy: pol(repo+":v1", true)}, action: UpToDate, reasonPart: "running the policy's latest image"},
		// Flux's digestReflectionPolicy: the tag is mutable, the digest says
		// which build; the pods may run an older build of app:main.
		{name: "digest pinned policy over a bare tag", in: Input{Service: svc(), Deployment: dep(repo+":main", 1), Policy: pol(repo+":main@sha256:"+strings.Repeat("b", 64), true)},
			action: Deploy, target: repo + ":main@sha256:" + strings.Repeat("b", 64), reasonPart: "the policy selected a new image"},
		{name: "digest moved", in: Input{Service: svc(), Deployment: dep(repo+":main@sha256:"+strings.Repeat("a", 64), 1), Policy: pol(repo+":main@sha256:"+strings.Repeat("b", 64), true)},
			action: Deploy, target: repo + ":main@sha256:" + strings.Repeat("b", 64), reasonPart: "the policy selected a new image"},
		{name: "same digest", in: Input{Service: svc(), Deployment: dep(repo+":main@sha256:"+strings.Repeat("b", 64), 1), Policy: pol(repo+":main@sha256:"+strings.Repeat("b", 64), true)},
			action: UpToDate, reasonPart: "running the policy's latest image"},
		{name: "registry failure waits for its retry time", in: Input{Service: svc(), Now: time.Date(2026, 11, 25, 10, 1, 0, 0, time.UTC), Deployment: dep(repo+":sha-aaa", 1, func(d *appsv1.Deployment) {
			d.Annotations[AnnRetry] = `{"image":"` + repo + `:sha-bbb","cause":"registry","reason":"503 Service Unavailable","attempts":1,"after":"2026-11-25T10:02:00Z"}`
		}), Policy: pol(repo+":sha-bbb", true)}, action: Skip, reasonPart: "failed because of the registry (503 Service Unavailable); trying again after 2026-11-25 10:02:00"},
		{name: "registry failure is tried again after its time", in: Input{Service: svc(), Now: time.Date(2026, 11, 25, 10, 2, 0, 0, time.UTC), Deployment: dep(repo+":sha-aaa", 1, func(d *appsv1.Deployment) {
			d.Annotations[AnnRetry] = `{"image":"` + repo + `:sha-bbb","cause":"registry","reason":"503","attempts":1,"after":"2026-11-25T10:02:00Z"}`
		}), Policy: pol(repo+":sha-bbb", true)}, action: Deploy, target: repo + ":sha-bbb", reasonPart: "the policy selected a new image"},
		// Issue 17, item 4: after a rollback for a passing cause, Flux (or a
		// person) applies the image again; while its rollout has not
		// completed, runs must not call it up to date.
		{name: "a retried image running again, not rolled out, within its backoff", in: Input{Service: svc(), Now: time.Date(2026, 11, 25, 10, 1, 0, 0, time.UTC), Deployment: dep(repo+":sha-bbb", 2, func(d *appsv1.Deployment) {
			d.Annotations[AnnRetry] = `{"image":"` + repo + `:sha-bbb","cause":"registry","reason":"503","attempts":1,"after":"2026-11-25T10:02:00Z"}`
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, UpdatedReplicas: 1, AvailableReplicas: 1}
		}), Policy: pol(repo+":sha-bbb", true)}, action: Skip, problem: true, reasonPart: "runs " + repo + ":sha-bbb, whose last try failed because of the registry (503); verified again after 2026-11-25 10:02:00"},
		{name: "a retried image running again is verified after its backoff", in: Input{Service: svc(), Now: time.Date(2026, 11, 25, 10, 3, 0, 0, time.UTC), Deployment: dep(repo+":sha-bbb", 2, func(d *appsv1.Deployment) {
			d.Annotations[AnnRetry] = `{"image":"` + repo + `:sha-bbb","cause":"registry","reason":"503","attempts":1,"after":"2026-11-25T10:02:00Z"}`
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, UpdatedReplicas: 1, AvailableReplicas: 1}
		}), Policy: pol(repo+":sha-bbb", true)}, action: Verify, target: repo + ":sha-bbb", reasonPart: "verifying it"},
		{name: "a retried image running again and rolled out is verified at once", in: Input{Service: svc(), Now: time.Date(2026, 11, 25, 10, 1, 0, 0, time.UTC), Deployment: dep(repo+":sha-bbb", 2, func(d *appsv1.Deployment) {
			d.Annotations[AnnRetry] = `{"image":"` + repo + `:sha-bbb","cause":"registry","reason":"503","attempts":1,"after":"2026-11-25T10:02:00Z"}`
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}
		}), Policy: pol(repo+":sha-bbb", true)}, action: Verify, target: repo + ":sha-bbb", reasonPart: "verifying it"},
		{name: "registry port is part of the name",
			in:     Input{Service: svc(), Deployment: dep("registry.local:5000/app:v1", 1), Policy: pol("registry.local/app:v1", true)},
			action: Deploy, target: "registry.local/app:v1", reasonPart: "repository changes"},
		// Issue 19, soak: a soak an earlier run could not see through is
		// carried on before a newer image is deployed; a passed one is
		// history.
		{name: "soaking, the policy moved on", in: Input{Service: svc(), Now: time.Date(2026, 11, 25, 10, 6, 0, 0, time.UTC), Deployment: dep(repo+":sha-bbb", 2, soakMark("sha-bbb", false))},
			action: Soak, target: repo + ":sha-bbb", reasonPart: "soaking since 2026-11-25 10:00:00, 4m0s left"},
		{name: "soak ended, not looked at yet", in: Input{Service: svc(), Now: time.Date(2026, 11, 25, 10, 30, 0, 0, time.UTC), Deployment: dep(repo+":sha-bbb", 2, soakMark("sha-bbb", false)), Policy: pol(repo+":sha-bbb", true)},
			action: Soak, target: repo + ":sha-bbb", reasonPart: "the soak has ended: a last look"},
		{name: "soaked", in: Input{Service: svc(), Deployment: dep(repo+":sha-bbb", 2, soakMark("sha-bbb", true)), Policy: pol(repo+":sha-ccc", true)},
			action: Deploy, target: repo + ":sha-ccc", reasonPart: "the policy selected a new image"},
		{name: "a soak mark of another image", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 2, soakMark("sha-bbb", false)), Policy: pol(repo+":sha-aaa", true)},
			action: UpToDate, reasonPart: "running the policy's latest image"},
		{name: "held while soaking", in: Input{Service: svc(), Deployment: dep(repo+":sha-bbb", 2, soakMark("sha-bbb", false), func(d *appsv1.Deployment) {
			d.Annotations[AnnHold] = `{"by":"alice@host","reason":"incident 42","at":"2026-11-25T10:00:00Z"}`
		})}, action: Skip, reasonPart: "held by alice@host"},
		{name: "missing deployment", in: Input{Service: svc(), Policy: pol(repo+":sha-bbb", true)}, action: Skip, problem: true, reasonPart: "Deployment apps/api-gateway not found"},
		{name: "missing policy", in: Input{Service: svc(), Deployment: d1}, action: Skip, problem: true, reasonPart: "ImagePolicy flux-system/api-gateway not found"},
		{name: "policy without image", in: Input{Service: svc(), Deployment: d1, Policy: pol("", false)}, action: Skip, reasonPart: "has no image yet"},
		{name: "policy not ready", in: Input{Service: svc(), Deployment: d1, Policy: pol(repo+":sha-bbb", false)}, action: Skip, reasonPart: "is not Ready"},
		{name: "bare tag in policy is refused", in: Input{Service: svc(), Deployment: d1, Policy: pol("sha-", true)}, action: Skip, problem: true, reasonPart: "invalid image reference"},
		{name: "paused", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1, func(d *appsv1.Deployment) { d.Spec.Paused = true }), Policy: pol(repo+":sha-bbb", true)}, action: Skip, reasonPart: "paused"},
		{name: "held", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1, func(d *appsv1.Deployment) {
			d.Annotations[AnnHold] = `{"by":"alice@host","reason":"incident 42","at":"2026-11-25T10:00:00Z"}`
		}), Policy: pol(repo+":sha-bbb", true)}, action: Skip, reasonPart: "held by alice@host since 2026-11-25 10:00: incident 42"},
		{name: "garbled hold still holds", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1, func(d *appsv1.Deployment) { d.Annotations[AnnHold] = "yes" }), Policy: pol(repo+":sha-bbb", true)}, action: Skip, reasonPart: "held"},
		{name: "remembered failed image", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1, func(d *appsv1.Deployment) {
			d.Annotations[AnnFailedImage] = `{"image":"` + repo + `:sha-bbb","reason":"ImagePullBackOff","at":"2026-11-25T10:00:00Z"}`
		}), Policy: pol(repo+":sha-bbb", true)}, action: Skip, reasonPart: "failed on 2026-11-25 10:00; waiting"},
		// A record without its date (another writer's) said "failed on
		// 0001-01-01 00:00" (issue 18, sixth pass).
		{name: "remembered failed image without a date", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1, func(d *appsv1.Deployment) {
			d.Annotations[AnnFailedImage] = `{"image":"` + repo + `:sha-bbb","reason":"ImagePullBackOff"}`
		}), Policy: pol(repo+":sha-bbb", true)}, action: Skip, reasonPart: repo + ":sha-bbb failed at a time not recorded; waiting"},
		{name: "held without a date", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1, func(d *appsv1.Deployment) {
			d.Annotations[AnnHold] = `{"by":"alice@host","reason":"incident 42"}`
		}), Policy: pol(repo+":sha-bbb", true)}, action: Skip, reasonPart: "held by alice@host: incident 42"},
		{name: "still running a failed image whose rollback failed", in: Input{Service: svc(), Deployment: dep(repo+":sha-bbb", 2, func(d *appsv1.Deployment) {
			d.Annotations[AnnFailedImage] = `{"image":"` + repo + `:sha-bbb","reason":"ImagePullBackOff","at":"2026-11-25T10:00:00Z","rollbackError":"no rollout history found"}`
		}), Policy: pol(repo+":sha-bbb", true)}, action: Skip, problem: true, reasonPart: "runs " + repo + ":sha-bbb, which failed on 2026-11-25 10:00 (ImagePullBackOff); the rollback could not be applied: no rollout history found"},
		// Never silent about a bad image, whoever applied it (issue 12).
		{name: "failed image applied again from git, the policy moved on", in: Input{Service: svc(), Deployment: dep(repo+":sha-bbb", 3, appliedByFlux, managedBy(flux.KustomizeManager), failedMark("sha-bbb")),
			Policy: pol(repo+":sha-aaa", true)}, action: Skip, problem: true, reasonPart: "applied by kustomize-controller from Kustomization flux-system/apps"},
		{name: "failed image applied again from git, the policy still selects it", in: Input{Service: svc(), Deployment: dep(repo+":sha-bbb", 3, appliedByFlux, managedBy(flux.KustomizeManager), failedMark("sha-bbb")),
			Policy: pol(repo+":sha-bbb", true)}, action: Skip, problem: true, reasonPart: "applied by kustomize-controller from Kustomization flux-system/apps"},
		{name: "failed image set by a person, the policy moved on: deployed over", in: Input{Service: svc(), Deployment: dep(repo+":sha-bbb", 3, managedBy("kubectl-set"), failedMark("sha-bbb")),
			Policy: pol(repo+":sha-aaa", true)}, action: Deploy, target: repo + ":sha-aaa", reasonPart: "the policy selected a new image"},
		{name: "held service running the failed image", in: Input{Service: svc(), Deployment: dep(repo+":sha-bbb", 3, appliedByFlux, managedBy(flux.KustomizeManager), failedMark("sha-bbb"), func(d *appsv1.Deployment) {
			d.Annotations[AnnHold] = `{"by":"alice@host","reason":"bad build","at":"2026-11-25T10:00:00Z"}`
		}), Policy: pol(repo+":sha-aaa", true)}, action: Skip, problem: true, reasonPart: "applied by kustomize-controller"},
		// Never fight: an image Flux put back is not deployed again until
		// git has autodeploy's.
		{name: "reverted by Flux", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 3, appliedByFlux, managedBy(flux.KustomizeManager), func(d *appsv1.Deployment) {
			d.Annotations[AnnDeployedImage] = repo + ":sha-bbb"
			d.Annotations[AnnVerified] = "true"
		}), Policy: pol(repo+":sha-bbb", true)}, action: Skip, problem: true, reasonPart: "reverted by kustomize-controller from Kustomization flux-system/apps: git has " + repo + ":sha-aaa"},
		{name: "git behind a new image: deployed once", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 3, appliedByFlux, managedBy(flux.KustomizeManager), func(d *appsv1.Deployment) {
			d.Annotations[AnnDeployedImage] = repo + ":sha-aaa"
		}), Policy: pol(repo+":sha-bbb", true)}, action: Deploy, target: repo + ":sha-bbb", reasonPart: "the policy selected a new image"},
		{name: "failed image memory does not block the next image", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1, func(d *appsv1.Deployment) {
			d.Annotations[AnnFailedImage] = `{"image":"` + repo + `:sha-bbb","reason":"x","at":"2026-11-25T10:00:00Z"}`
		}), Policy: pol(repo+":sha-ccc", true)}, action: Deploy, target: repo + ":sha-ccc", reasonPart: "the policy selected a new image"},
		{name: "unverified rollout is verified first", in: Input{Service: svc(), Deployment: dep(repo+":sha-bbb", 2, func(d *appsv1.Deployment) {
			d.Annotations[AnnVerified] = "false"
			d.Annotations[AnnDeployedImage] = repo + ":sha-bbb"
			d.Annotations[AnnPreviousRevision] = "1"
		}), Policy: pol(repo+":sha-ccc", true)}, action: Verify, target: repo + ":sha-bbb", reasonPart: "an earlier run set this image and did not verify it"},
		{name: "unverified rollout that the registry failed waits for its retry", in: Input{Service: svc(), Now: time.Date(2026, 11, 25, 10, 1, 0, 0, time.UTC), Deployment: dep(repo+":sha-bbb", 2, func(d *appsv1.Deployment) {
			d.Annotations[AnnVerified] = "false"
			d.Annotations[AnnDeployedImage] = repo + ":sha-bbb"
			d.Annotations[AnnRetry] = `{"image":"` + repo + `:sha-bbb","cause":"registry","reason":"503; the rollback could not be applied: no revision 9","attempts":1,"after":"2026-11-25T10:02:00Z"}`
		}), Policy: pol(repo+":sha-bbb", true)}, action: Skip, reasonPart: "is verified again after 2026-11-25 10:02:00: the last try failed because of the registry"},
		{name: "unverified rollout that the registry failed is verified after its retry time", in: Input{Service: svc(), Now: time.Date(2026, 11, 25, 10, 2, 0, 0, time.UTC), Deployment: dep(repo+":sha-bbb", 2, func(d *appsv1.Deployment) {
			d.Annotations[AnnVerified] = "false"
			d.Annotations[AnnDeployedImage] = repo + ":sha-bbb"
			d.Annotations[AnnRetry] = `{"image":"` + repo + `:sha-bbb","cause":"registry","reason":"503","attempts":1,"after":"2026-11-25T10:02:00Z"}`
		}), Policy: pol(repo+":sha-bbb", true)}, action: Verify, target: repo + ":sha-bbb", reasonPart: "an earlier run set this image and did not verify it"},
		{name: "unverified mark for another image is ignored", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 2, func(d *appsv1.Deployment) {
			d.Annotations[AnnVerified] = "false"
			d.Annotations[AnnDeployedImage] = repo + ":sha-bbb"
		}), Policy: pol(repo+":sha-aaa", true)}, action: UpToDate, reasonPart: "running the policy's latest image", staleMarks: true},
		{name: "several containers and none named", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1, func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers, corev1.Container{Name: "proxy", Image: "envoy:1"})
		}), Policy: pol(repo+":sha-bbb", true)}, action: Skip, problem: true, reasonPart: "has 2 containers (api-gateway, proxy): set container"},
		{name: "named container missing", in: Input{Service: func() config.Service { s := svc(); s.Container = "app"; return s }(), Deployment: d1, Policy: pol(repo+":sha-bbb", true)},
			action: Skip, problem: true, reasonPart: `no container "app" (it has api-gateway)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.in)
			if got.Action != tt.action || got.Problem != tt.problem {
				t.Fatalf("Plan = %s (problem %v): %s; want %s (problem %v)", got.Action, got.Problem, got.Reason, tt.action, tt.problem)
			}
			if tt.target != "" && got.Target != tt.target {
				t.Errorf("target = %q, want %q", got.Target, tt.target)
			}
			if tt.reasonPart == "" {
				t.Fatal("every row names its reason")
			}
			if got.Problem && got.Fix == "" {
				t.Errorf("a problem without its fix: %s", got.Reason)
			}
			if got.StaleMarks != tt.staleMarks {
				t.Errorf("StaleMarks = %v, want %v", got.StaleMarks, tt.staleMarks)
			}
			if !strings.Contains(got.Reason, tt.reasonPart) {
				t.Errorf("reason = %q, want it to contain %q", got.Reason, tt.reasonPart)
			}
		})
	}
}

// A policy that goes back to an image the Deployment ran and replaced is a
// downgrade (alphabetical sha tags); an image rolled back *from* is not.
func TestPlanDowngrade(t *testing.T) {
	// aaa (rev 1) then bbb (rev 2, current); the policy says aaa again.
	d := dep(repo+":sha-bbb", 2)
	rss := []*appsv1.ReplicaSet{rs(d, repo+":sha-aaa", 1, ""), rs(d, repo+":sha-bbb", 2, "")}
	got := Plan(Input{Service: svc(), Deployment: d, ReplicaSets: rss, Policy: pol(repo+":sha-aaa", true)})
	if got.Action != Skip || !strings.Contains(got.Reason, "downgrade refused: revision 1") {
		t.Fatalf("downgrade: %s: %s", got.Action, got.Reason)
	}
	// Someone set ccc a moment ago: its ReplicaSet does not exist yet, and
	// bbb (rev 2) was replaced all the same.
	d = dep(repo+":sha-ccc", 2)
	rss = []*appsv1.ReplicaSet{rs(d, repo+":sha-aaa", 1, ""), rs(d, repo+":sha-bbb", 2, "")}
	got = Plan(Input{Service: svc(), Deployment: d, ReplicaSets: rss, Policy: pol(repo+":sha-bbb", true)})
	if got.Action != Skip || !strings.Contains(got.Reason, "downgrade refused: revision 2") {
		t.Fatalf("before the controller caught up: %s: %s", got.Action, got.Reason)
	}
	// A new build of the same tag, pinned by digest, is no downgrade: the
	// earlier ReplicaSet ran the bare tag (another build).
	digest := "@sha256:" + strings.Repeat("b", 64)
	d = dep(repo+":sha-7@sha256:"+strings.Repeat("a", 64), 2)
	rss = []*appsv1.ReplicaSet{rs(d, repo+":sha-7", 1, ""), rs(d, repo+":sha-7@sha256:"+strings.Repeat("a", 64), 2, "")}
	got = Plan(Input{Service: svc(), Deployment: d, ReplicaSets: rss, Policy: pol(repo+":sha-7"+digest, true)})
	if got.Action != Deploy {
		t.Fatalf("new build of a tag: %s: %s", got.Action, got.Reason)
	}
	// aaa (rev 1), bbb (rev 2), rolled back to aaa (now rev 3, history 1);
	// the policy still says bbb: that is not a downgrade.
	d = dep(repo+":sha-aaa", 3)
	rss = []*appsv1.ReplicaSet{rs(d, repo+":sha-aaa", 3, "1"), rs(d, repo+":sha-bbb", 2, "")}
	got = Plan(Input{Service: svc(), Deployment: d, ReplicaSets: rss, Policy: pol(repo+":sha-bbb", true)})
	if got.Action != Deploy || got.PreviousRevision != 3 {
		t.Fatalf("after rollback: %s (prev %d): %s", got.Action, got.PreviousRevision, got.Reason)
	}
}

func BenchmarkPlan500(b *testing.B) {
	ins := make([]Input, 500)
	for i := range ins {
		d := dep(repo+":sha-aaa", 2)
		ins[i] = Input{Service: svc(), Deployment: d, ReplicaSets: []*appsv1.ReplicaSet{rs(d, repo+":sha-000", 1, ""), rs(d, repo+":sha-aaa", 2, "")}, Policy: pol(repo+":sha-bbb", true)}
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, in := range ins {
			Plan(in)
		}
	}
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

func ptr[T any](v T) *T { return &v }

// appliedByFlux labels d as applied by Kustomization flux-system/apps.
func appliedByFlux(d *appsv1.Deployment) {
	d.Labels = map[string]string{flux.KustomizationNameLabel: "apps", flux.KustomizationNamespaceLabel: "flux-system"}
}

func failedMark(tag string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		d.Annotations[AnnFailedImage] = `{"image":"` + repo + `:` + tag + `","reason":"ImagePullBackOff","at":"2026-11-25T10:00:00Z"}`
	}
}

// The problems that need a person are notified once: each carries a key
// that stays the same from run to run while the problem does.
func TestPlanAlerts(t *testing.T) {
	bad := dep(repo+":sha-bbb", 3, appliedByFlux, managedBy(flux.KustomizeManager), failedMark("sha-bbb"))
	a := Plan(Input{Service: svc(), Deployment: bad, Policy: pol(repo+":sha-aaa", true)})
	b := Plan(Input{Service: svc(), Deployment: bad, Policy: pol(repo+":sha-bbb", true)})
	if a.Alert == "" || a.Alert != b.Alert {
		t.Errorf("alerts for one failed image running: %q, %q", a.Alert, b.Alert)
	}
	reverted := dep(repo+":sha-aaa", 3, appliedByFlux, managedBy(flux.KustomizeManager), func(d *appsv1.Deployment) { d.Annotations[AnnDeployedImage] = repo + ":sha-bbb" })
	if r := Plan(Input{Service: svc(), Deployment: reverted, Policy: pol(repo+":sha-bbb", true)}); r.Alert == "" || r.Alert == a.Alert {
		t.Errorf("reverted alert %q (failed-image alert %q)", r.Alert, a.Alert)
	}
	if ok := Plan(Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1), Policy: pol(repo+":sha-aaa", true)}); ok.Alert != "" {
		t.Errorf("up to date, alert %q", ok.Alert)
	}
}

// Every problem of exit 7 that lasts from run to run has an alert key, so
// that it is notified, and printed on cron's stderr, once (issue 17 item
// 10: a missing ImagePolicy mailed every two minutes); deliberate skips have
// none. Only a missing Deployment's key says so: there is no Deployment to
// record it on.
func TestPlanEveryStandingProblemAlerts(t *testing.T) {
	twoContainers := func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers, corev1.Container{Name: "sidecar", Image: "busybox"})
	}
	held := func(d *appsv1.Deployment) { d.Annotations[AnnHold] = `{"by":"ops","reason":"x"}` }
	tests := []struct {
		name    string
		in      Input
		alert   bool
		missing bool
	}{
		{name: "no Deployment", in: Input{Service: svc(), Policy: pol(repo+":sha-bbb", true)}, alert: true, missing: true},
		{name: "no ImagePolicy", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1)}, alert: true},
		{name: "two containers", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1, twoContainers), Policy: pol(repo+":sha-bbb", true)}, alert: true},
		{name: "invalid current image", in: Input{Service: svc(), Deployment: dep("Bad Image", 1), Policy: pol(repo+":sha-bbb", true)}, alert: true},
		{name: "invalid policy image", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1), Policy: pol("Bad Image", true)}, alert: true},
		{name: "held", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1, held), Policy: pol(repo+":sha-bbb", true)}},
		{name: "policy not ready", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1), Policy: pol(repo+":sha-bbb", false)}},
		{name: "deploy", in: Input{Service: svc(), Deployment: dep(repo+":sha-aaa", 1), Policy: pol(repo+":sha-bbb", true)}},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := Plan(tt.in), Plan(tt.in)
			if a.Problem != tt.alert {
				t.Fatalf("problem %v, want %v: %s", a.Problem, tt.alert, a.Reason)
			}
			if (a.Alert != "") != tt.alert || a.Alert != b.Alert {
				t.Fatalf("alert keys %q, %q; want one stable key: %v", a.Alert, b.Alert, tt.alert)
			}
			if got := strings.HasPrefix(a.Alert, AlertDeploymentMissing); got != tt.missing {
				t.Errorf("alert %q: Deployment missing %v, want %v", a.Alert, got, tt.missing)
			}
			if other, dup := seen[a.Alert]; dup && a.Alert != "" {
				t.Errorf("alert %q is also %s's", a.Alert, other)
			}
			seen[a.Alert] = tt.name
		})
	}
}

// managedBy marks d's container image as written by manager, as the API
// server records it in managedFields.
func managedBy(manager string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		d.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate,
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"api-gateway\"}":{"f:image":{}}}}}}}`)}}}
	}
}

// kubectl rollout undo: aaa (rev 1), bbb (rev 2), undone to aaa (rev 3,
// history 1) by kubectl, which also copies rev 1's annotations back.
func TestPlanAfterKubectlUndo(t *testing.T) {
	undone := func(mut ...func(*appsv1.Deployment)) (*appsv1.Deployment, []*appsv1.ReplicaSet) {
		d := dep(repo+":sha-aaa", 3, mut...)
		return d, []*appsv1.ReplicaSet{rs(d, repo+":sha-aaa", 3, "1"), rs(d, repo+":sha-bbb", 2, "")}
	}
	d, rss := undone(managedBy("kubectl-rollout"))
	got := Plan(Input{Service: svc(), Deployment: d, ReplicaSets: rss, Policy: pol(repo+":sha-bbb", true)})
	if got.Action != Skip || got.Problem || !strings.Contains(got.Reason, "rolled back by kubectl-rollout: runs do not deploy it again") {
		t.Fatalf("after kubectl undo: %s: %s", got.Action, got.Reason)
	}
	// autodeploy's own rollback is governed by its marks (hold, failed
	// image): once resumed and forgotten, the image is deployable.
	d, rss = undone(managedBy("autodeploy"))
	if got := Plan(Input{Service: svc(), Deployment: d, ReplicaSets: rss, Policy: pol(repo+":sha-bbb", true)}); got.Action != Deploy {
		t.Fatalf("after autodeploy's rollback: %s: %s", got.Action, got.Reason)
	}
	// An unverified mark copied back by the undo describes rev 1's old
	// rollout, not a rollout of autodeploy's: stale, not verified again.
	d, rss = undone(managedBy("kubectl-rollout"), func(d *appsv1.Deployment) {
		d.Annotations[AnnVerified] = "false"
		d.Annotations[AnnDeployedImage] = repo + ":sha-aaa"
		d.Annotations[AnnPreviousRevision] = "0"
	})
	got = Plan(Input{Service: svc(), Deployment: d, ReplicaSets: rss, Policy: pol(repo+":sha-aaa", true)})
	if got.Action != UpToDate || !got.StaleMarks {
		t.Fatalf("revived unverified mark: %s (stale %v): %s", got.Action, got.StaleMarks, got.Reason)
	}
}

// A Flux revert is reported even when git's template differs in other
// ways: Flux's apply then made a new ReplicaSet, and autodeploy's image
// looks "replaced" to the downgrade check (review of issue 12).
func TestPlanRevertWithAnotherTemplateChange(t *testing.T) {
	d := dep(repo+":sha-aaa", 3, appliedByFlux, managedBy(flux.KustomizeManager), func(d *appsv1.Deployment) {
		d.Annotations[AnnDeployedImage] = repo + ":sha-bbb"
		d.Annotations[AnnVerified] = "true"
	})
	rss := []*appsv1.ReplicaSet{rs(d, repo+":sha-aaa", 1, ""), rs(d, repo+":sha-bbb", 2, "")}
	// git's template: the old image and a new variable.
	d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "FROM_GIT", Value: "1"}}
	rss = append(rss, rs(d, repo+":sha-aaa", 3, ""))
	got := Plan(Input{Service: svc(), Deployment: d, ReplicaSets: rss, Policy: pol(repo+":sha-bbb", true)})
	if got.Action != Skip || !got.Problem || got.Alert == "" || !strings.Contains(got.Reason, "reverted by kustomize-controller") {
		t.Fatalf("%s (problem %v, alert %q): %s", got.Action, got.Problem, got.Alert, got.Reason)
	}
}

// A Deployment running the failed image stays a problem whatever else the
// plan would say: the policy moved on to an image the downgrade check or a
// pending retry keeps back (review of issue 12).
func TestPlanFailedImageRunningNeverQuiet(t *testing.T) {
	// aaa (rev 1), bbb (rev 2), then the person set the failed ccc (rev 3);
	// the policy selects bbb again, which the downgrade check refuses.
	d := dep(repo+":sha-ccc", 3, managedBy("kubectl-set"), failedMark("sha-ccc"))
	rss := []*appsv1.ReplicaSet{rs(d, repo+":sha-aaa", 1, ""), rs(d, repo+":sha-bbb", 2, ""), rs(d, repo+":sha-ccc", 3, "")}
	got := Plan(Input{Service: svc(), Deployment: d, ReplicaSets: rss, Policy: pol(repo+":sha-bbb", true)})
	if got.Action != Skip || !got.Problem || !strings.HasPrefix(got.Reason, "runs "+repo+":sha-ccc, which failed") || got.Fix == "" {
		t.Fatalf("downgrade: %s (problem %v): %s", got.Action, got.Problem, got.Reason)
	}
	// A registry failure of the policy's image, waiting for its retry.
	d = dep(repo+":sha-ccc", 3, managedBy("kubectl-set"), failedMark("sha-ccc"), func(d *appsv1.Deployment) {
		d.Annotations[AnnRetry] = `{"image":"` + repo + `:sha-ddd","cause":"registry","reason":"503","attempts":1,"after":"2026-11-25T10:02:00Z"}`
	})
	got = Plan(Input{Service: svc(), Now: time.Date(2026, 11, 25, 10, 1, 0, 0, time.UTC), Deployment: d, Policy: pol(repo+":sha-ddd", true)})
	if got.Action != Skip || !got.Problem || !strings.HasPrefix(got.Reason, "runs "+repo+":sha-ccc, which failed") {
		t.Fatalf("retry pending: %s (problem %v): %s", got.Action, got.Problem, got.Reason)
	}
}

func TestPlanDeployWindows(t *testing.T) {
	windowed := func(ws ...config.DeployWindow) config.Service {
		s := svc()
		s.RolloutTimeout = 5 * time.Minute
		s.DeployWindows = ws
		return s
	}
	paris := config.DeployWindow{Cron: "0 9 * * 1-5", Duration: 8 * time.Hour, TimeZone: "Europe/Paris"}
	night := config.DeployWindow{Cron: "0 22 * * *", Duration: 4 * time.Hour, TimeZone: "UTC"}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	unverified := func(d *appsv1.Deployment) {
		d.Annotations[AnnVerified] = "false"
		d.Annotations[AnnDeployedImage] = repo + ":sha-bbb"
	}
	tests := []struct {
		name       string
		in         Input
		action     Action
		reasonPart string
	}{
		// Saturday 2026-12-05.
		{name: "outside: skipped with the next opening in its zone",
			in:     Input{Service: windowed(paris), Deployment: dep(repo+":sha-aaa", 1), Policy: pol(repo+":sha-bbb", true), Now: at("2026-12-05T10:00:00Z")},
			action: Skip, reasonPart: "outside its deploy window, next opens Mon 09:00 Europe/Paris"},
		{name: "inside: deployed",
			in:     Input{Service: windowed(paris), Deployment: dep(repo+":sha-aaa", 1), Policy: pol(repo+":sha-bbb", true), Now: at("2026-12-02T09:00:00Z")},
			action: Deploy, reasonPart: "the policy selected a new image"},
		{name: "open but the rollout would end after the close",
			in:     Input{Service: windowed(paris), Deployment: dep(repo+":sha-aaa", 1), Policy: pol(repo+":sha-bbb", true), Now: at("2026-12-02T15:57:00Z")},
			action: Skip, reasonPart: "outside its deploy window (a rollout of up to 5m0s would end after it closes), next opens Thu 09:00 Europe/Paris"},
		{name: "--ignore-windows deploys outside",
			in:     Input{Service: windowed(paris), Deployment: dep(repo+":sha-aaa", 1), Policy: pol(repo+":sha-bbb", true), Now: at("2026-12-05T10:00:00Z"), IgnoreWindows: true},
			action: Deploy, reasonPart: "outside its deploy window, next opens Mon 09:00 Europe/Paris, deployed anyway (--ignore-windows)"},
		// 2026-03-29, the change to summer time: 09:30 CEST is 07:30 UTC.
		{name: "DST day inside",
			in:     Input{Service: windowed(config.DeployWindow{Cron: "0 9 * * *", Duration: 8 * time.Hour, TimeZone: "Europe/Paris"}), Deployment: dep(repo+":sha-aaa", 1), Policy: pol(repo+":sha-bbb", true), Now: at("2026-03-29T07:30:00Z")},
			action: Deploy},
		{name: "DST day before the opening",
			in:     Input{Service: windowed(config.DeployWindow{Cron: "0 9 * * *", Duration: 8 * time.Hour, TimeZone: "Europe/Paris"}), Deployment: dep(repo+":sha-aaa", 1), Policy: pol(repo+":sha-bbb", true), Now: at("2026-03-29T06:30:00Z")},
			action: Skip, reasonPart: "next opens Sun 09:00 Europe/Paris"},
		{name: "window crossing midnight",
			in:     Input{Service: windowed(night), Deployment: dep(repo+":sha-aaa", 1), Policy: pol(repo+":sha-bbb", true), Now: at("2026-12-03T01:00:00Z")},
			action: Deploy},
		{name: "a verify is never held back by a window",
			in:     Input{Service: windowed(paris), Deployment: dep(repo+":sha-bbb", 2, unverified), Policy: pol(repo+":sha-bbb", true), Now: at("2026-12-05T10:00:00Z")},
			action: Verify, reasonPart: "did not verify it"},
		{name: "up to date outside a window is up to date",
			in:     Input{Service: windowed(paris), Deployment: dep(repo+":sha-bbb", 2), Policy: pol(repo+":sha-bbb", true), Now: at("2026-12-05T10:00:00Z")},
			action: UpToDate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.in)
			if got.Action != tt.action || !strings.Contains(got.Reason, tt.reasonPart) {
				t.Errorf("Plan = %s %q, want %s containing %q", got.Action, got.Reason, tt.action, tt.reasonPart)
			}
			if got.Action == Skip && got.Problem {
				t.Errorf("outside a window is not a problem: %+v", got)
			}
			if got.WindowIgnored != tt.in.IgnoreWindows {
				t.Errorf("WindowIgnored = %v, want %v", got.WindowIgnored, tt.in.IgnoreWindows)
			}
			if got.Action == Skip && !got.OutsideWindow {
				t.Errorf("Window not set on a window skip: %+v", got)
			}
		})
	}
}

func TestPlanHoldUntil(t *testing.T) {
	now := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	held := func(until string) func(*appsv1.Deployment) {
		return func(d *appsv1.Deployment) {
			d.Annotations[AnnHold] = `{"by":"alice@host","reason":"release freeze","at":"2026-12-02T10:00:00Z","until":"` + until + `"}`
		}
	}
	tests := []struct {
		name       string
		dep        *appsv1.Deployment
		action     Action
		expired    bool
		reasonPart string
	}{
		{name: "until later: held with its end", dep: dep(repo+":sha-aaa", 1, held("2026-12-02T20:00:00Z")), action: Skip,
			reasonPart: "held by alice@host since 2026-12-02 10:00 until 2026-12-02 20:00 UTC (in 2h): release freeze"},
		// As status counts it (kubectl's compact age, cut to the minute):
		// the plan said "in 2h0m" beside status' "in 1h59m" for one hold
		// (issue 18, fifth pass).
		{name: "until in 1h59m30s: counted as status does", dep: dep(repo+":sha-aaa", 1, held("2026-12-02T19:59:30Z")), action: Skip,
			reasonPart: "until 2026-12-02 19:59 UTC (in 1h59m): release freeze"},
		{name: "until now: expired and deployed", dep: dep(repo+":sha-aaa", 1, held("2026-12-02T18:00:00Z")), action: Deploy, expired: true, reasonPart: "the policy selected a new image"},
		{name: "until past: expired and deployed", dep: dep(repo+":sha-aaa", 1, held("2026-12-02T12:00:00Z")), action: Deploy, expired: true, reasonPart: "the policy selected a new image"},
		{name: "until past and up to date: expired", dep: dep(repo+":sha-bbb", 1, held("2026-12-02T12:00:00Z")), action: UpToDate, expired: true},
		// An expired hold does not keep a failed image quiet either.
		{name: "expired hold over a failed image: deployed over", dep: dep(repo+":sha-bbb", 3, managedBy("kubectl-set"), failedMark("sha-bbb"), held("2026-12-02T12:00:00Z")),
			action: Deploy, expired: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			latest := repo + ":sha-bbb"
			if tt.name == "expired hold over a failed image: deployed over" {
				latest = repo + ":sha-aaa"
			}
			got := Plan(Input{Service: svc(), Deployment: tt.dep, Policy: pol(latest, true), Now: now})
			if got.Action != tt.action || got.HoldExpired != tt.expired || !strings.Contains(got.Reason, tt.reasonPart) {
				t.Errorf("Plan = %s (hold expired %v) %q, want %s (expired %v) containing %q", got.Action, got.HoldExpired, got.Reason, tt.action, tt.expired, tt.reasonPart)
			}
			if got.Held == tt.expired {
				t.Errorf("Held = %v with hold expired %v", got.Held, tt.expired)
			}
		})
	}
}

// Issue 19, promotion: the target takes the exact image its source runs,
// verified there with its soak passed, promote.after since the
// verification (soakMark: verified at 10:00, soak until 10:10).
func TestPlanPromotion(t *testing.T) {
	prod := func() config.Service {
		s := svc()
		s.Name, s.Namespace, s.PolicyNamespace, s.PolicyName = "api-gateway", "production", "", ""
		s.Promote = &config.Promote{From: "api-gateway-staging", After: 30 * time.Minute}
		return s
	}
	staging := config.Service{Name: "api-gateway-staging", Namespace: "staging", Deployment: "api-gateway"}
	src := func(tag string, mut ...func(*appsv1.Deployment)) *Source {
		return &Source{Service: staging, Deployment: dep(repo+":"+tag, 2, mut...)}
	}
	at := func(h, m int) time.Time { return time.Date(2026, 11, 25, h, m, 0, 0, time.UTC) }
	tests := []struct {
		name       string
		in         Input
		action     Action
		target     string
		problem    bool
		reasonPart string
	}{
		{"verified, soaked, after passed", Input{Service: prod(), Now: at(10, 31), Deployment: dep(repo+":sha-aaa", 1), Source: src("sha-bbb", soakMark("sha-bbb", true))},
			Deploy, repo + ":sha-bbb", false, "promoted from api-gateway-staging, where it was verified"},
		{"after not passed yet", Input{Service: prod(), Now: at(10, 20), Deployment: dep(repo+":sha-aaa", 1), Source: src("sha-bbb", soakMark("sha-bbb", true))},
			Skip, "", false, "is promoted from api-gateway-staging at 2026-11-25 10:30:00 (promote.after 30m0s"},
		{"still soaking in the source", Input{Service: prod(), Now: at(10, 40), Deployment: dep(repo+":sha-aaa", 1), Source: src("sha-bbb", soakMark("sha-bbb", false))},
			Skip, "", false, "is soaking in api-gateway-staging until 2026-11-25 10:10:00"},
		{"not verified in the source", Input{Service: prod(), Now: at(10, 40), Deployment: dep(repo+":sha-aaa", 1), Source: src("sha-bbb")},
			Skip, "", false, "not verified there by autodeploy"},
		{"the source's soak mark is another image's (rolled back, set by hand)", Input{Service: prod(), Now: at(10, 40), Deployment: dep(repo+":sha-aaa", 1), Source: src("sha-ccc", soakMark("sha-bbb", true))},
			Skip, "", false, "runs " + repo + ":sha-ccc, not verified there"},
		{"the source runs an image that failed there", Input{Service: prod(), Now: at(10, 40), Deployment: dep(repo+":sha-aaa", 1), Source: src("sha-bbb", soakMark("sha-bbb", true), failedMark("sha-bbb"))},
			Skip, "", false, "which failed there"},
		{"remembered as failed in the target", Input{Service: prod(), Now: at(10, 40), Deployment: dep(repo+":sha-aaa", 1, failedMark("sha-bbb")), Source: src("sha-bbb", soakMark("sha-bbb", true))},
			Skip, "", false, "failed on 2026-11-25 10:00"},
		{"already running it", Input{Service: prod(), Now: at(10, 1), Deployment: dep(repo+":sha-bbb", 1), Source: src("sha-bbb", soakMark("sha-bbb", false))},
			UpToDate, "", false, "running the policy's latest image"},
		{"no source Deployment", Input{Service: prod(), Now: at(10, 40), Deployment: dep(repo+":sha-aaa", 1), Source: &Source{Service: staging}},
			Skip, "", false, "the Deployment of api-gateway-staging (promote.from) does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.in)
			if got.Action != tt.action || got.Problem != tt.problem || !strings.Contains(got.Reason, tt.reasonPart) || (tt.target != "" && got.Target != tt.target) {
				t.Fatalf("Plan = %s %q problem %v target %s, want %s %q problem %v target %s", got.Action, got.Reason, got.Problem, got.Target, tt.action, tt.reasonPart, tt.problem, tt.target)
			}
			if got.PromotedFrom != "api-gateway-staging" || got.Policy != "" {
				t.Errorf("PromotedFrom %q, Policy %q", got.PromotedFrom, got.Policy)
			}
		})
	}
}

// Promotion under GitOps (issue 19): the target's Deployment is applied
// from git; the plan names the ImagePolicy autodeploy owns for it, which
// the deploy points at the promoted tag; one of that name that is not
// autodeploy's is a problem, and a revert by Flux while the mark names the
// promoted image is one too, naming the owned policy's setter marker.
func TestPlanPromotionUnderGitOps(t *testing.T) {
	prod := config.Service{Name: "api-gateway", Namespace: "production", Deployment: "api-gateway", RolloutTimeout: time.Minute, AutoRollback: true,
		Promote: &config.Promote{From: "api-gateway-staging", PolicyNamespace: "flux-system", PolicyName: "autodeploy-api-gateway", RootPolicyNamespace: "flux-system", RootPolicyName: "api-gateway"}}
	staging := config.Service{Name: "api-gateway-staging", Namespace: "staging", Deployment: "api-gateway"}
	src := &Source{Service: staging, Deployment: dep(repo+":sha-bbb", 2, soakMark("sha-bbb", true))}
	now := time.Date(2026, 11, 25, 10, 40, 0, 0, time.UTC)
	owned := func(ours bool) *OwnedPolicy {
		return &OwnedPolicy{Policy: flux.Policy{Namespace: "flux-system", Name: "autodeploy-api-gateway", Latest: repo + ":sha-aaa", Ready: true}, Ours: ours}
	}
	reverted := func(d *appsv1.Deployment) { d.Annotations[AnnDeployedImage] = repo + ":sha-bbb" }
	tests := []struct {
		name       string
		d          *appsv1.Deployment
		owned      *OwnedPolicy
		action     Action
		problem    bool
		reasonPart string
		fixPart    string
	}{
		{name: "first promotion: the owned policy is created by the deploy", d: dep(repo+":sha-aaa", 1, appliedByFlux), action: Deploy, reasonPart: "promoted from api-gateway-staging"},
		{name: "the owned policy is autodeploy's", d: dep(repo+":sha-aaa", 1, appliedByFlux), owned: owned(true), action: Deploy, reasonPart: "promoted from api-gateway-staging"},
		{name: "someone else's policy at the owned name", d: dep(repo+":sha-aaa", 1, appliedByFlux), owned: owned(false), action: Skip, problem: true,
			reasonPart: "ImagePolicy flux-system/autodeploy-api-gateway is not autodeploy's", fixPart: "set promote.imagePolicy of api-gateway to a name no other ImagePolicy has"},
		{name: "Flux put git's image back over the promotion: said, not fought", d: dep(repo+":sha-aaa", 2, appliedByFlux, reverted, managedBy(flux.KustomizeManager)), owned: owned(true), action: Skip, problem: true,
			reasonPart: "was reverted by kustomize-controller from Kustomization flux-system/apps", fixPart: `# {"$imagepolicy": "flux-system:autodeploy-api-gateway"}`},
		{name: "a failed promotion is never promoted again", d: dep(repo+":sha-aaa", 3, appliedByFlux, failedMark("sha-bbb")), owned: owned(true), action: Skip, reasonPart: "sha-bbb failed on 2026-11-25 10:00"},
		{name: "running the promoted image", d: dep(repo+":sha-bbb", 2, appliedByFlux), owned: owned(true), action: UpToDate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(Input{Service: prod, Now: now, Deployment: tt.d, Source: src, Owned: tt.owned})
			if got.Action != tt.action || got.Problem != tt.problem || !strings.Contains(got.Reason, tt.reasonPart) || !strings.Contains(got.Fix, tt.fixPart) {
				t.Fatalf("Plan = %s %q problem %v fix %q, want %s %q problem %v fix %q", got.Action, got.Reason, got.Problem, got.Fix, tt.action, tt.reasonPart, tt.problem, tt.fixPart)
			}
			if got.PromotionPolicy != "flux-system/autodeploy-api-gateway" || got.Kustomization != "flux-system/apps" {
				t.Errorf("PromotionPolicy %q, Kustomization %q", got.PromotionPolicy, got.Kustomization)
			}
			if tt.action == Deploy && got.Target != repo+":sha-bbb" {
				t.Errorf("target %s", got.Target)
			}
		})
	}
	// Not applied from git: no owned policy.
	if got := Plan(Input{Service: prod, Now: now, Deployment: dep(repo+":sha-aaa", 1), Source: src}); got.Action != Deploy || got.PromotionPolicy != "" {
		t.Errorf("without GitOps: %s, PromotionPolicy %q", got.Action, got.PromotionPolicy)
	}
}

// autodeploy promote: skips promote.after, takes --image, and promotes an
// image remembered as failed only with --force.
func TestPlanPromoteNow(t *testing.T) {
	s := svc()
	s.Namespace, s.PolicyNamespace, s.PolicyName = "production", "", ""
	s.Promote = &config.Promote{From: "staging", After: time.Hour}
	staging := config.Service{Name: "staging", Namespace: "staging", Deployment: "api-gateway"}
	now := time.Date(2026, 11, 25, 10, 20, 0, 0, time.UTC) // verified 10:00, soaked 10:10, after until 11:00
	src := &Source{Service: staging, Deployment: dep(repo+":sha-bbb", 2, soakMark("sha-bbb", true))}
	pn := func(img string, force bool) *PromoteNow {
		return &PromoteNow{Service: s.Name, Image: img, By: "alice@bastion", Reason: "customer fix", Force: force}
	}
	tests := []struct {
		name       string
		in         Input
		action     Action
		target     string
		reasonPart string
	}{
		{"cron waits for after", Input{Service: s, Now: now, Deployment: dep(repo+":sha-aaa", 1), Source: src}, Skip, "", "promote.after 1h0m0s"},
		{"promote skips after", Input{Service: s, Now: now, Deployment: dep(repo+":sha-aaa", 1), Source: src, PromoteNow: pn("", false)},
			Deploy, repo + ":sha-bbb", "promoted from staging by alice@bastion (autodeploy promote): customer fix"},
		{"promote --image", Input{Service: s, Now: now, Deployment: dep(repo+":sha-aaa", 1), Source: src, PromoteNow: pn(repo+":sha-ccc", false)},
			Deploy, repo + ":sha-ccc", "by alice@bastion"},
		{"promote refuses an image failed in the target", Input{Service: s, Now: now, Deployment: dep(repo+":sha-aaa", 1, failedMark("sha-bbb")), Source: src, PromoteNow: pn("", false)},
			Skip, "", "autodeploy promote --force promotes it anyway"},
		{"promote --force", Input{Service: s, Now: now, Deployment: dep(repo+":sha-aaa", 1, failedMark("sha-bbb")), Source: src, PromoteNow: pn("", true)},
			Deploy, repo + ":sha-bbb", "by alice@bastion"},
		{"promote refuses an image failed in the source", Input{Service: s, Now: now, Deployment: dep(repo+":sha-aaa", 1), PromoteNow: pn(repo+":sha-ddd", false),
			Source: &Source{Service: staging, Deployment: dep(repo+":sha-bbb", 2, soakMark("sha-bbb", true), failedMark("sha-ddd"))}},
			Skip, "", "failed in staging"},
		{"promote still waits for the source's soak", Input{Service: s, Now: now.Add(-15 * time.Minute), Deployment: dep(repo+":sha-aaa", 1), PromoteNow: pn("", false),
			Source: &Source{Service: staging, Deployment: dep(repo+":sha-bbb", 2, soakMark("sha-bbb", false))}},
			Skip, "", "is soaking in staging"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.in)
			if got.Action != tt.action || !strings.Contains(got.Reason, tt.reasonPart) || (tt.target != "" && got.Target != tt.target) {
				t.Fatalf("Plan = %s %q target %s, want %s %q target %s", got.Action, got.Reason, got.Target, tt.action, tt.reasonPart, tt.target)
			}
		})
	}
}

// The deploy patch of a promotion says whence, and for `autodeploy
// promote` who and why, in its change-cause and promotion record: what
// `history` shows per revision (issue 19).
func TestPromotionRecord(t *testing.T) {
	s := svc()
	s.Namespace, s.PolicyNamespace, s.PolicyName = "production", "", ""
	s.Promote = &config.Promote{From: "staging", After: 0}
	src := &Source{Service: config.Service{Name: "staging", Namespace: "staging", Deployment: "api-gateway"}, Deployment: dep(repo+":sha-bbb", 2, soakMark("sha-bbb", true))}
	now := time.Date(2026, 11, 25, 10, 20, 0, 0, time.UTC)
	tests := []struct {
		name    string
		pn      *PromoteNow
		cause   string
		by, why string
	}{
		{name: "scheduled", cause: "autodeploy: " + repo + ":sha-aaa -> " + repo + ":sha-bbb (promoted from staging)"},
		{name: "autodeploy promote", pn: &PromoteNow{Service: s.Name, By: "alice@bastion", Reason: "customer fix"},
			cause: "autodeploy: " + repo + ":sha-aaa -> " + repo + ":sha-bbb (promoted from staging by alice@bastion: customer fix)", by: "alice@bastion", why: "customer fix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := Plan(Input{Service: s, Now: now, Deployment: dep(repo+":sha-aaa", 1), Source: src, PromoteNow: tt.pn})
			if dec.Action != Deploy {
				t.Fatalf("Plan = %s %q", dec.Action, dec.Reason)
			}
			if got := deployCause(dec); got != tt.cause {
				t.Errorf("change-cause %q, want %q", got, tt.cause)
			}
			if dec.PromotedFrom != "staging" || dec.PromotedBy != tt.by || dec.PromoteReason != tt.why {
				t.Errorf("promoted from %q by %q why %q", dec.PromotedFrom, dec.PromotedBy, dec.PromoteReason)
			}
		})
	}
	rec := map[string]string{AnnPromotion: mustJSON(Promotion{From: "staging", Image: repo + ":sha-bbb", At: now})}
	if _, ok := ParsePromotion(rec, repo+":sha-bbb"); !ok {
		t.Error("the record of the revision's image is not read")
	}
	if _, ok := ParsePromotion(rec, repo+":sha-ccc"); ok {
		t.Error("a record of another image is read as this revision's")
	}
}
