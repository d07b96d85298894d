//go:build integration

package deploy_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
)

// BenchmarkNoopRun measures a run with nothing to deploy against the real
// cluster, with 3 and 500 services in one namespace: time per run and API
// requests per run (counted at the client's transport). Without reconcile,
// the requests are a fixed handful of LISTs; the rescan costs a PATCH and a
// watch answer per ImageRepository and (Flux >= 2.7) per ImagePolicy,
// because the Kubernetes API has no bulk patch.
//
//	make test-integration-bench   (or: go test -tags integration -run '^$' -bench NoopRun ./internal/deploy)
func BenchmarkNoopRun(b *testing.B) {
	for _, n := range []int{3, 500} {
		e := kubetest.New(b)
		refl := e.StartReflector(fluxsim.V1, e.Namespace)
		ctx := context.Background()
		svcs := e.CreateIdleServices(refl, n, reg, "sha-1111111")
		cfg, err := config.Parse([]byte(fmt.Sprintf("lockFile: /tmp/x.lock\nflux: {namespace: %s}\ndefaults: {namespace: %s}\nservices:\n%s", e.Namespace, e.Namespace, svcs)), "bench.yaml")
		if err != nil {
			b.Fatal(err)
		}
		var requests atomic.Int64
		rc := rest.CopyConfig(e.Config)
		rc.QPS, rc.Burst = 100, 300 // what autodeploy itself uses (internal/kube)
		rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingRT{rt, &requests} })
		kc, err := kubernetes.NewForConfig(rc)
		if err != nil {
			b.Fatal(err)
		}
		dc, err := dynamic.NewForConfig(rc)
		if err != nil {
			b.Fatal(err)
		}
		r := &deploy.Runner{Kube: kc, Dynamic: dc, Config: cfg, Log: runlog.Discard(), Now: time.Now}
		for _, reconcile := range []bool{false, true} {
			b.Run(fmt.Sprintf("services=%d/reconcile=%v", n, reconcile), func(b *testing.B) {
				b.ReportAllocs()
				requests.Store(0)
				for b.Loop() {
					res, err := r.Run(ctx, "bench", deploy.Options{NoReconcile: !reconcile})
					if err != nil {
						b.Fatal(err)
					}
					for _, s := range res.Services {
						if s.Outcome != deploy.OutcomeUpToDate {
							b.Fatalf("%s: %s %s", s.Service, s.Outcome, s.Reason)
						}
					}
					if len(res.Warnings) > 0 {
						b.Fatalf("warnings: %v", res.Warnings)
					}
				}
				b.ReportMetric(float64(requests.Load())/float64(b.N), "requests/op")
			})
		}
	}
}

type countingRT struct {
	rt http.RoundTripper
	n  *atomic.Int64
}

func (c countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}
