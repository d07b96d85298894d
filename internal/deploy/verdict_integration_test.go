//go:build integration

package deploy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// Issue 17: a fault that is not the image's rolls back with a retry mark
// that names the cause and keeps the cluster's own words; the image is
// never remembered as failed. The grace is short (2 s): the faults below
// last for good, the default 30 s would only slow the test down.

// wantRetried checks the outcome of a run whose rollout failed for cause:
// rolled back to old, no failed-image mark, a retry mark for img with
// evidence containing part.
func wantRetried(t *testing.T, e *kubetest.Env, res *deploy.Result, svc, old, img string, cause rollout.Cause, part string) {
	t.Helper()
	s := wantOutcome(t, res, svc, deploy.OutcomeRolledBack)
	if !strings.Contains(s.Error, "not the image: it will be tried again") {
		t.Errorf("error = %q, want it to say the image is not to blame", s.Error)
	}
	d := e.GetDeployment(svc)
	if fi, ok := deploy.ParseFailedImage(d.Annotations); ok {
		t.Fatalf("%s blamed the image: failed-image %+v", cause, fi)
	}
	rt, ok := deploy.ParseRetry(d.Annotations)
	if !ok || rt.Image != img || rt.Cause != string(cause) || !strings.Contains(rt.Evidence, part) {
		t.Fatalf("retry mark = %+v, want %s for %s with evidence %q", rt, cause, img, part)
	}
	if got := kubetest.Image(d); got != old {
		t.Fatalf("not rolled back: %s", got)
	}
}

// A namespace ResourceQuota of pods: 3 on a 3-replica Deployment with
// maxSurge 1: the surge pod is refused, the new ReplicaSet never creates a
// pod (the deployment controller's ReplicaFailure condition).
func TestRunQuotaIsTheClusters(t *testing.T) {
	e := kubetest.New(t)
	old := reg + "api:sha-1111111"
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: old, replicas: 3}}, "")
	ctx := context.Background()
	q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "pods"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("3")}}}
	if _, err := e.Kube.CoreV1().ResourceQuotas(e.Namespace).Create(ctx, q, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.Eventually(t, 60*time.Second, "the quota controller counting 3 pods", func(ctx context.Context) (bool, error) {
		q, err := e.Kube.CoreV1().ResourceQuotas(e.Namespace).Get(ctx, "pods", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		used := q.Status.Used[corev1.ResourcePods]
		return used.Value() == 3, nil
	})
	img := reg + "api:sha-2222222"
	f.refl.Push("api", img)
	r := f.runner()
	r.Grace = 2 * time.Second
	res, err := r.Run(ctx, "quota", deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantRetried(t, e, res, "api", old, img, rollout.CauseCluster, "exceeded quota")
}

// Every node the Deployment may use cordoned: the new pod stays Pending,
// Unschedulable. The node is the test's own (tainted for it), so that
// cordoning it leaves the other tests' pods alone.
func TestRunCordonedIsTheClusters(t *testing.T) {
	e := kubetest.New(t)
	node, sel, tol := e.CreateNode()
	old := reg + "api:sha-1111111"
	e.CreateDeployment(kubetest.Deployment{Name: "api", Image: old, NodeSelector: sel, Tolerations: tol})
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: old, noDeploy: true}}, "")
	ctx := context.Background()
	if _, err := rollout.Wait(ctx, e.Kube, e.Namespace, "api", rollout.WaitOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Kube.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	img := reg + "api:sha-2222222"
	f.refl.Push("api", img)
	r := f.runner()
	r.Grace = 2 * time.Second
	res, err := r.Run(ctx, "cordoned", deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantRetried(t, e, res, "api", old, img, rollout.CauseCluster, "node(s) were unschedulable")
}

// Pull errors are read without the reference they quote: a registry outage
// for a repository named forbidden-words is the registry's (it blamed the
// image), and a 401 is the credentials', not the content.
func TestRunPullErrorsBlameWhatTheySay(t *testing.T) {
	for _, tt := range []struct {
		name, repo, tag string
		cause           rollout.Cause
		part            string
	}{
		{"outage", "forbidden-words", "flaky-2222222", rollout.CauseRegistry, "503 Service Unavailable"},
		{"credentials", "api", "noauth-2222222", rollout.CauseCredentials, "401 Unauthorized"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := kubetest.New(t)
			old := reg + tt.repo + ":sha-1111111"
			f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: old}}, "")
			img := reg + tt.repo + ":" + tt.tag
			f.refl.Push("api", img)
			wantRetried(t, e, f.run(t, deploy.Options{}), "api", old, img, tt.cause, tt.part)
		})
	}
}

// A health check whose credential is missing deploys nothing: the run
// reports a problem (exit 7) that names the variable, and the image is not
// remembered as failed (it was: deployed, checked without the header,
// rolled back).
func TestRunMissingHealthCredentialDeploysNothing(t *testing.T) {
	e := kubetest.New(t)
	old := reg + "api:sha-1111111"
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: old,
		extra: "    health: {url: 'http://127.0.0.1:1/health', authorizationEnv: AUTODEPLOY_TEST_UNSET_HEALTH_TOKEN}\n"}}, "")
	f.refl.Push("api", reg+"api:sha-2222222")
	s := wantOutcome(t, f.run(t, deploy.Options{}), "api", deploy.OutcomeSkipped)
	if !s.Problem || !strings.Contains(s.Reason, "AUTODEPLOY_TEST_UNSET_HEALTH_TOKEN") || s.Fix == "" {
		t.Errorf("skip = %+v, want a problem naming the variable, with a fix", s.Decision)
	}
	d := e.GetDeployment("api")
	if got := kubetest.Image(d); got != old {
		t.Fatalf("deployed without a health credential: %s", got)
	}
	for _, a := range []string{deploy.AnnFailedImage, deploy.AnnRetry, deploy.AnnDeployedImage} {
		if v, ok := d.Annotations[a]; ok {
			t.Errorf("%s = %s: nothing should be marked", a, v)
		}
	}
}

// Issue 17, item 9: a Deployment deleted during its rollout was "rollback
// failed" (exit 6). It is a service that could not be handled (not-run,
// exit 7): no verdict on the image, nothing to roll back.
func TestRunDeploymentDeletedMidRollout(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: reg + "api:sha-1111111"}}, "")
	img := reg + "api:unready-2222222"
	f.refl.Push("api", img)
	r := f.runner()
	r.Progress = onFirst("api", "Waiting for deployment", func() {
		if err := e.Kube.AppsV1().Deployments(e.Namespace).Delete(context.Background(), "api", metav1.DeleteOptions{}); err != nil {
			t.Error(err)
		}
	})
	res, err := r.Run(context.Background(), "deleted", deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := wantOutcome(t, res, "api", deploy.OutcomeNotRun)
	if !strings.Contains(s.Error, "was deleted during the rollout") {
		t.Errorf("error = %q", s.Error)
	}
}
