//go:build integration

package testcluster_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
	"github.com/autodeploy-dev/autodeploy/internal/testcluster"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

func TestDeploymentRollsOutAndSetImageCompletes(t *testing.T) {
	e := kubetest.New(t)
	ctx := context.Background()
	e.CreateDeployment(kubetest.Deployment{Name: "web", Image: "ghcr.io/acme/web:v1", Replicas: 3})
	d, err := rollout.Wait(ctx, e.Kube, e.Namespace, "web", rollout.WaitOptions{})
	if err != nil {
		t.Fatalf("first rollout: %v", err)
	}
	if d.Status.AvailableReplicas != 3 {
		t.Fatalf("available replicas = %d, want 3", d.Status.AvailableReplicas)
	}
	if _, err := rollout.SetImage(ctx, e.Kube, d, "web", "ghcr.io/acme/web:v2", nil, false); err != nil {
		t.Fatal(err)
	}
	d, err = rollout.Wait(ctx, e.Kube, e.Namespace, "web", rollout.WaitOptions{})
	if err != nil {
		t.Fatalf("second rollout: %v", err)
	}
	owned, err := rollout.ListOwned(ctx, e.Kube, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(owned) != 2 {
		t.Fatalf("ReplicaSets = %d, want 2 (one per image)", len(owned))
	}
	cur := rollout.Current(d, owned)
	if img, _ := rollout.ContainerImage(&cur.Spec.Template, "web"); img != "ghcr.io/acme/web:v2" || rollout.Revision(cur) != 2 {
		t.Fatalf("current ReplicaSet runs %s at revision %d, want web:v2 at 2", img, rollout.Revision(cur))
	}
	if st := rollout.Evaluate(d); st.State != rollout.Complete {
		t.Fatalf("status = %+v", st)
	}
}

// The failure patterns of testdata/kwok/stages.yaml, which later tests rely on.
func TestKWOKFailurePatterns(t *testing.T) {
	e := kubetest.New(t)
	ctx := context.Background()
	tests := []struct {
		tag    string
		reason string // waiting reason the pod must reach; "" for unready
		event  string // Warning event reason
		cause  rollout.Cause
	}{
		{tag: "fail-404", reason: "ImagePullBackOff", event: "Failed", cause: rollout.CauseImage},
		{tag: "flaky-503", reason: "ImagePullBackOff", event: "Failed", cause: rollout.CauseRegistry},
		{tag: "crash-1", reason: "CrashLoopBackOff", event: "BackOff", cause: rollout.CauseImage},
		{tag: "unready-1"},
	}
	for _, tt := range tests {
		t.Run(tt.tag, func(t *testing.T) {
			name := "p-" + tt.tag
			e.CreateDeployment(kubetest.Deployment{Name: name, Image: "ghcr.io/acme/app:" + tt.tag})
			var pod corev1.Pod
			kubetest.Eventually(t, 30*time.Second, tt.tag+" pod state", func(ctx context.Context) (bool, error) {
				pods, err := e.Kube.CoreV1().Pods(e.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
				if err != nil || len(pods.Items) == 0 {
					return false, err
				}
				pod = pods.Items[0]
				if len(pod.Status.ContainerStatuses) == 0 {
					return false, nil
				}
				cs := pod.Status.ContainerStatuses[0]
				if tt.reason == "" {
					return pod.Status.Phase == corev1.PodRunning && cs.State.Running != nil, nil
				}
				return cs.State.Waiting != nil && cs.State.Waiting.Reason == tt.reason, nil
			})
			if isReady(&pod) {
				t.Fatalf("pod %s is Ready, want never Ready", pod.Name)
			}
			if tt.reason != "" {
				if p, bad := rollout.Problem(&pod); !bad || p.Reason != tt.reason {
					t.Fatalf("FatalProblem = %+v, %v; want %s", p, bad, tt.reason)
				}
			}
			if tt.tag == "crash-1" {
				first := pod.Status.ContainerStatuses[0].RestartCount
				kubetest.Eventually(t, 20*time.Second, "a growing restart count", func(ctx context.Context) (bool, error) {
					p, err := e.Kube.CoreV1().Pods(e.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
					return err == nil && p.Status.ContainerStatuses[0].RestartCount > first, err
				})
			}
			if tt.event != "" {
				kubetest.Eventually(t, 20*time.Second, "a Warning "+tt.event+" event", func(ctx context.Context) (bool, error) {
					evs, err := e.Kube.CoreV1().Events(e.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod.Name})
					if err != nil {
						return false, err
					}
					for _, ev := range evs.Items {
						if ev.Type == corev1.EventTypeWarning && ev.Reason == tt.event {
							return true, nil
						}
					}
					return false, nil
				})
			}
			if tt.reason != "" {
				// And the rollout waiter fails fast on it, naming pod and reason.
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				_, err := rollout.Wait(wctx, e.Kube, e.Namespace, name, rollout.WaitOptions{})
				var fe *rollout.FailedError
				if !errors.As(err, &fe) || fe.Problem == nil || fe.Problem.Pod != pod.Name {
					t.Fatalf("Wait = %v, want a FailedError naming pod %s", err, pod.Name)
				}
				if fe.Cause != tt.cause {
					t.Errorf("cause = %s, want %s (%v)", fe.Cause, tt.cause, err)
				}
			}
		})
	}
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Every ImagePolicy/ImageRepository API version of every supported Flux
// generation accepts the status the tests write for it, and keeps the
// fields autodeploy reads. The default cluster has Flux 2.7's CRDs; 2.6 and
// 2.9 get an API server of their own.
func TestFluxCRDsAcceptStatus(t *testing.T) {
	type gen struct {
		flux     string
		versions []fluxsim.Version
	}
	gens := []gen{
		{"2.6", []fluxsim.Version{fluxsim.Flux26, fluxsim.V1beta1}},
		{"2.7", []fluxsim.Version{fluxsim.V1, fluxsim.V1beta2}},
		{"2.9", []fluxsim.Version{fluxsim.V1}},
	}
	for _, g := range gens {
		t.Run("flux-"+g.flux, func(t *testing.T) {
			var e *kubetest.Env
			if g.flux == testcluster.DefaultFlux {
				e = kubetest.New(t)
			} else {
				e = kubetest.DedicatedControlPlane(t, g.flux)
			}
			for _, v := range g.versions {
				repo, pol := "repo-"+v.APIVersion, "pol-"+v.APIVersion
				e.CreateImageRepository(v, e.Namespace, repo, "ghcr.io/acme/app")
				e.CreateImagePolicy(v, e.Namespace, pol, repo)
				e.SetPolicyImage(v, e.Namespace, pol, "ghcr.io/acme/app:sha-abc")
				gvr := schema.GroupVersionResource{Group: fluxsim.Group, Version: v.APIVersion, Resource: "imagepolicies"}
				obj, err := e.Dynamic.Resource(gvr).Namespace(e.Namespace).Get(context.Background(), pol, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if v.LatestRef {
					tag, _, _ := unstructured.NestedString(obj.Object, "status", "latestRef", "tag")
					name, _, _ := unstructured.NestedString(obj.Object, "status", "latestRef", "name")
					if name != "ghcr.io/acme/app" || tag != "sha-abc" {
						t.Errorf("%s latestRef = %s:%s", v.APIVersion, name, tag)
					}
				}
				if err := fluxsim.SetRepository(context.Background(), e.Dynamic, v, e.Namespace, repo, "ghcr.io/acme/app", "token-1", []string{"1", "2", "3", "4", "5", "6", "7"}); err != nil {
					t.Fatal(err)
				}
				rgvr := schema.GroupVersionResource{Group: fluxsim.Group, Version: v.APIVersion, Resource: "imagerepositories"}
				robj, err := e.Dynamic.Resource(rgvr).Namespace(e.Namespace).Get(context.Background(), repo, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if n, _, _ := unstructured.NestedInt64(robj.Object, "status", "lastScanResult", "tagCount"); n != 7 {
					t.Errorf("%s ImageRepository tagCount = %d, want 7", v.APIVersion, n)
				}
				// What a Flux < 2.7 run judges its policies against.
				if tags, _, _ := unstructured.NestedStringSlice(robj.Object, "status", "lastScanResult", "latestTags"); v.LatestRef && len(tags) != 7 {
					t.Errorf("%s ImageRepository latestTags = %q: the CRD dropped them", v.APIVersion, tags)
				}
				if h, _, _ := unstructured.NestedString(robj.Object, "status", "lastHandledReconcileAt"); h != "token-1" {
					t.Errorf("%s ImageRepository lastHandledReconcileAt = %q: the CRD dropped it", v.APIVersion, h)
				}
				img, _, _ := unstructured.NestedString(obj.Object, "status", "latestImage")
				if v.LatestImage != (img == "ghcr.io/acme/app:sha-abc") {
					t.Errorf("%s latestImage = %q, want present=%v", v.APIVersion, img, v.LatestImage)
				}
			}
			receiverAcceptsStatus(t, e)
		})
	}
}

// receiverAcceptsStatus creates a notification.toolkit.fluxcd.io/v1
// Receiver as `manifests receiver` writes it and the status
// notification-controller writes, and checks that the fields doctor reads
// (the Ready condition, webhookPath) are kept.
func receiverAcceptsStatus(t *testing.T, e *kubetest.Env) {
	t.Helper()
	ctx := context.Background()
	gvr := schema.GroupVersionResource{Group: "notification.toolkit.fluxcd.io", Version: "v1", Resource: "receivers"}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver",
		"metadata": map[string]any{"name": "hook", "namespace": e.Namespace},
		"spec": map[string]any{"type": "github", "events": []any{"ping", "package"}, "secretRef": map[string]any{"name": "hook-token"},
			"resources": []any{map[string]any{"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository", "name": "app", "namespace": e.Namespace}}},
	}}
	u, err := e.Dynamic.Resource(gvr).Namespace(e.Namespace).Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("Receiver: %v", err)
	}
	u.Object["status"] = map[string]any{"observedGeneration": u.GetGeneration(), "webhookPath": "/hook/abc", "conditions": []any{map[string]any{
		"type": "Ready", "status": "True", "reason": "Succeeded", "message": "ok", "lastTransitionTime": "2026-12-03T00:00:00Z", "observedGeneration": u.GetGeneration()}}}
	if u, err = e.Dynamic.Resource(gvr).Namespace(e.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("Receiver status: %v", err)
	}
	if p, _, _ := unstructured.NestedString(u.Object, "status", "webhookPath"); p != "/hook/abc" {
		t.Errorf("Receiver webhookPath = %q: the CRD dropped it", p)
	}
	if c, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions"); len(c) != 1 {
		t.Errorf("Receiver conditions = %v: the CRD dropped them", c)
	}
}

// late-crash-*: Ready at once (a rollout passes), then one restart about 5 s
// later, dated in lastState.terminated (what a soak catches, issue 19).
func TestKWOKLateCrash(t *testing.T) {
	e := kubetest.New(t)
	e.CreateDeployment(kubetest.Deployment{Name: "late", Image: "ghcr.io/acme/app:late-crash-1"})
	var ready time.Time
	kubetest.Eventually(t, 30*time.Second, "a Ready late-crash pod", func(ctx context.Context) (bool, error) {
		pods, err := e.Kube.CoreV1().Pods(e.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=late"})
		if err != nil || len(pods.Items) == 0 || !isReady(&pods.Items[0]) {
			return false, err
		}
		if n := pods.Items[0].Status.ContainerStatuses[0].RestartCount; n != 0 {
			t.Fatalf("restartCount %d when first Ready, want 0", n)
		}
		ready = time.Now()
		return true, nil
	})
	kubetest.Eventually(t, 30*time.Second, "one restart", func(ctx context.Context) (bool, error) {
		pods, err := e.Kube.CoreV1().Pods(e.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=late"})
		if err != nil || len(pods.Items) == 0 {
			return false, err
		}
		cs := pods.Items[0].Status.ContainerStatuses[0]
		if cs.RestartCount == 0 {
			return false, nil
		}
		term := cs.LastTerminationState.Terminated
		if cs.RestartCount != 1 || term == nil || term.ExitCode != 1 || cs.State.Running == nil || !isReady(&pods.Items[0]) {
			t.Fatalf("after the restart: %+v, Ready %v", cs, isReady(&pods.Items[0]))
		}
		// About 5 s after Ready (KWOK's delay), never at once.
		if d := term.FinishedAt.Sub(ready.Truncate(time.Second)); d < 3*time.Second {
			t.Fatalf("restarted %s after Ready, want about 5s", d)
		}
		return true, nil
	})
}
