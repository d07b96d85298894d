//go:build integration

package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiwatch "k8s.io/apimachinery/pkg/watch"

	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

// BenchmarkWatchPolicyChangeToPatch measures a running `autodeploy watch`
// with 500 services configured in one namespace: from the write of an
// ImagePolicy's new status.latestRef (what image-reflector-controller
// writes after a Receiver's request) to the Deployment's new image seen on
// a watch of the test's own: the informer's delivery, the action's reads,
// the plan and the patch. It reports the median and the 99th percentile
// (issue 20: p99 under 200 ms).
//
//	go test -tags integration -run '^$' -bench WatchPolicyChangeToPatch -benchtime 100x ./internal/cli
func BenchmarkWatchPolicyChangeToPatch(b *testing.B) {
	const n = 500
	e := kubetest.New(b)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	ctx := context.Background()
	svcs := e.CreateIdleServices(refl, n, reg, "sha-0000000")
	cfg, _ := writeConfig(b, fmt.Sprintf("log: {file: \"-\"}\nschedule: \"0 0 1 1 *\"\nflux: {namespace: %s, reconcileTimeout: 60s}\ndefaults: {namespace: %s}\nservices:\n%s", e.Namespace, e.Namespace, svcs))
	out := kubetest.NewLines()
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan ExitCode, 1)
	f := NewFactory(IOStreams{In: strings.NewReader(""), Out: out, ErrOut: io.Discard}, func(string) string { return "" })
	go func() { done <- Execute(wctx, f, []string{"watch", "--config", cfg, "--kubeconfig", e.Kubeconfig}) }()
	defer func() { cancel(); <-done }()
	out.WaitFor(b, 0, "trigger=start", `msg="run finished"`)
	// The deployment controller is still creating 500 ReplicaSets: a
	// rollout started now waits for it, which is the test bed's, not the
	// watch's.
	kubetest.Eventually(b, 5*time.Minute, "the deployment controller to observe every Deployment", func(ctx context.Context) (bool, error) {
		l, err := e.Kube.AppsV1().Deployments(e.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, d := range l.Items {
			if d.Status.ObservedGeneration < d.Generation {
				return false, nil
			}
		}
		return true, nil
	})

	w, err := e.Kube.AppsV1().Deployments(e.Namespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	var lat []time.Duration
	i := 0
	b.ResetTimer()
	for b.Loop() {
		i++
		name := fmt.Sprintf("svc-%03d", i%n)
		img := fmt.Sprintf("%s%s:sha-%07d", reg, name, i)
		from := out.Count()
		start := time.Now()
		e.SetPolicyImage(fluxsim.V1, e.Namespace, name, img)
		for ev := range w.ResultChan() {
			if ev.Type == apiwatch.Error {
				b.Fatalf("deployment watch: %v", ev.Object)
			}
			if d, ok := ev.Object.(*appsv1.Deployment); ok && d.Name == name && kubetest.Image(d) == img {
				break
			}
		}
		lat = append(lat, time.Since(start))
		// The action's rollout ends before the next change: one change
		// at a time is what is measured, not the queue behind a rollout.
		b.StopTimer()
		out.WaitFor(b, from, "svc="+name, `msg="service done"`)
		b.StartTimer()
	}
	b.StopTimer()
	if testing.Verbose() {
		all := strings.Split(out.String(), "\n")
		b.Logf("the watch's last lines:\n%s", strings.Join(all[max(0, len(all)-40):], "\n"))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
}
