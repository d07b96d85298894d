//go:build integration

package cli

import (
	"context"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

// Two hosts with the Lease lock: while host A rolls out, host B's run exits
// with the lock code naming A, and only A's deploy happens.
func TestLeaseLockTwoHosts(t *testing.T) {
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "lock: {type: lease, leaseNamespace: "+e.Namespace+"}\n")
	settledName(t, e, "api")
	refl.Push("api", reg+"api:unready-2") // a rollout that lasts until cancelled

	host := func(name string) func(string) string {
		return func(k string) string { return map[string]string{"AUTODEPLOY_LOCK_IDENTITY": name}[k] }
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inRollout := make(chan struct{})
	var once sync.Once
	a := NewFactory(IOStreams{In: strings.NewReader(""), Out: &strings.Builder{}, ErrOut: progressWriter(func(line string) {
		if strings.Contains(line, "Waiting for deployment") {
			once.Do(func() { close(inRollout) })
		}
	})}, host("host-a"))
	doneA := make(chan ExitCode)
	go func() { doneA <- Execute(ctx, a, []string{"run", "-v", "--config", cfg, "--kubeconfig", e.Kubeconfig}) }()
	<-inRollout

	var out, errOut strings.Builder
	b := NewFactory(IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, host("host-b"))
	if code := Execute(context.Background(), b, []string{"run", "-v", "--config", cfg, "--kubeconfig", e.Kubeconfig}); code != ExitLocked ||
		!strings.Contains(errOut.String(), "host-a") || !strings.Contains(errOut.String(), "Lease "+e.Namespace+"/autodeploy") {
		t.Fatalf("host B: exit %d, want %d naming host A's Lease:\n%s%s", code, ExitLocked, out.String(), errOut.String())
	}
	cancel()
	if code := <-doneA; code != ExitInterrupted {
		t.Fatalf("host A: exit %d", code)
	}
	// A released the Lease on the way out: the next run need not wait for
	// it to expire.
	l, err := e.Kube.CoordinationV1().Leases(e.Namespace).Get(context.Background(), "autodeploy", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "" {
		t.Fatalf("Lease after A's exit: %+v, %v", l, err)
	}
}
