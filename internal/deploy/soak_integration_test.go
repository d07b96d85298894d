//go:build integration

package deploy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

// Issue 19, soak: a late-crash-* image passes its rollout (Ready at once)
// and restarts about 5 s later (testdata/kwok/stages.yaml).

// Within one run: the run watches the soak, sees the restart, rolls back
// and remembers the image, as a failed rollout.
func TestSoakCatchesALateCrashWithinOneRun(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: reg + "api:sha-1111111", extra: "    soak: 30s\n"}}, "")
	f.refl.Push("api", reg+"api:late-crash-2222222")
	s := wantOutcome(t, f.run(t, deploy.Options{}), "api", deploy.OutcomeRolledBack)
	if !strings.Contains(s.Error, "soak failed") || !strings.Contains(s.Error, "restarted at") {
		t.Errorf("error = %q, want the soak's evidence", s.Error)
	}
	wantSoakFailed(t, e, "api", reg+"api:late-crash-2222222", reg+"api:sha-1111111")
}

// Across two runs: the first ends (here: interrupted) while the soak goes
// on; the crash happens between the runs; the second finds it in what the
// pod keeps and rolls back.
func TestSoakCatchesALateCrashBetweenTwoRuns(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: reg + "api:sha-1111111", extra: "    soak: 10m\n"}}, "")
	f.refl.Push("api", reg+"api:late-crash-2222222")
	wantOutcome(t, runUntilSoaking(t, f, "api"), "api", deploy.OutcomeDeployed)
	d := e.GetDeployment("api")
	m, ok := deploy.ParseSoak(d.Annotations)
	if !ok || m.Passed || m.Image != reg+"api:late-crash-2222222" || m.Until.Sub(m.VerifiedAt) != 10*time.Minute || d.Annotations[deploy.AnnPreviousRevision] == "" {
		t.Fatalf("soak mark %+v (ok %v), annotations %v", m, ok, d.Annotations)
	}
	// The crash, between the runs.
	kubetest.Eventually(t, 30*time.Second, "the late crash", func(ctx context.Context) (bool, error) {
		pods, err := e.Kube.CoreV1().Pods(e.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.Spec.Containers[0].Image == reg+"api:late-crash-2222222" && restarted(p) {
				return true, nil
			}
		}
		return false, nil
	})
	s := wantOutcome(t, f.run(t, deploy.Options{}), "api", deploy.OutcomeRolledBack)
	if s.Action != deploy.Soak || !strings.Contains(s.Error, "soak failed") {
		t.Errorf("second run: action %s, error %q", s.Action, s.Error)
	}
	wantSoakFailed(t, e, "api", reg+"api:late-crash-2222222", reg+"api:sha-1111111")
}

// A good image: a soak carried on by the next run ends "soaked", the mark
// says so, and where a rollback would have gone is forgotten.
func TestSoakPassesAcrossRuns(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: reg + "api:sha-1111111", extra: "    soak: 3s\n"}}, "")
	f.refl.Push("api", reg+"api:sha-2222222")
	wantOutcome(t, runUntilSoaking(t, f, "api"), "api", deploy.OutcomeDeployed)
	s := wantOutcome(t, f.run(t, deploy.Options{}), "api", deploy.OutcomeSoaked)
	if s.Action != deploy.Soak {
		t.Errorf("action %s, want soak", s.Action)
	}
	d := e.GetDeployment("api")
	if m, ok := deploy.ParseSoak(d.Annotations); !ok || !m.Passed || d.Annotations[deploy.AnnPreviousRevision] != "" || d.Annotations[deploy.AnnVerified] != "true" {
		t.Fatalf("after the soak: %+v %v", m, d.Annotations)
	}
	wantOutcome(t, f.run(t, deploy.Options{}), "api", deploy.OutcomeUpToDate)
}

// runUntilSoaking runs until svc's soak starts, then interrupts the run (as
// a SIGTERM would): deployed and verified, the soak is left to later runs.
func runUntilSoaking(t *testing.T, f *fixture, svc string) *deploy.Result {
	t.Helper()
	r := f.runner()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.Progress = onFirst(svc, "soaking", cancel)
	res, err := r.Run(ctx, "test", deploy.Options{})
	if err != context.Canceled || !res.Cancelled {
		t.Fatalf("Run = %v, cancelled %v; want context.Canceled", err, res.Cancelled)
	}
	return res
}

func restarted(p corev1.Pod) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.RestartCount > 0 {
			return true
		}
	}
	return false
}

// wantSoakFailed: the Deployment is back on before, with bad remembered.
func wantSoakFailed(t *testing.T, e *kubetest.Env, name, bad, before string) {
	t.Helper()
	d := e.GetDeployment(name)
	if img := kubetest.Image(d); img != before {
		t.Fatalf("image = %s, want the rollback to %s", img, before)
	}
	fi, ok := deploy.ParseFailedImage(d.Annotations)
	if !ok || fi.Image != bad {
		t.Fatalf("failed-image = %+v (ok %v), want %s", fi, ok, bad)
	}
	if _, ok := d.Annotations[deploy.AnnSoak]; ok {
		t.Errorf("soak mark left after the rollback: %s", d.Annotations[deploy.AnnSoak])
	}
}

// A soak is watched once every service had its turn: a 10-minute soak of
// the first service does not hold back the deploy of the second (it did:
// the run watched it in the first service's turn).
func TestSoakDoesNotHoldBackTheServicesAfterIt(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{
		{name: "first", image: reg + "first:sha-1111111", extra: "    soak: 10m\n"},
		{name: "second", image: reg + "second:sha-1111111"},
	}, "")
	f.refl.Push("first", reg+"first:sha-2222222")
	f.refl.Push("second", reg+"second:sha-2222222")
	res := runUntilSoaking(t, f, "first")
	wantOutcome(t, res, "first", deploy.OutcomeDeployed)
	wantOutcome(t, res, "second", deploy.OutcomeDeployed)
}
