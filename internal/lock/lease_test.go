package lock

import (
	"context"
	"errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

// The lease rules, on client-go's fake (the real cluster test of two hosts
// racing is in internal/cli).
func TestLease(t *testing.T) {
	c := fake.NewSimpleClientset()
	ctx := context.Background()
	clock := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }

	a, err := AcquireLease(ctx, c.CoordinationV1(), "flux-system", "autodeploy", "host-a/1", "autodeploy run r1", time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = AcquireLease(ctx, c.CoordinationV1(), "flux-system", "autodeploy", "host-b/2", "autodeploy run r2", time.Minute, now)
	var he *HeldError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "host-a/1: autodeploy run r1") {
		t.Fatalf("second host: %v", err)
	}
	// host-a crashes without releasing: after the lease duration, host-b
	// takes over.
	close(a.stop)
	<-a.done
	clock = clock.Add(2 * time.Minute)
	b, err := AcquireLease(ctx, c.CoordinationV1(), "flux-system", "autodeploy", "host-b/2", "autodeploy run r3", time.Minute, now)
	if err != nil {
		t.Fatalf("takeover of an expired lease: %v", err)
	}
	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
	// Released: anyone may take it at once.
	c2, err := AcquireLease(ctx, c.CoordinationV1(), "flux-system", "autodeploy", "host-c/3", "autodeploy run r4", time.Minute, now)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	c2.Release()
	l, _ := c.CoordinationV1().Leases("flux-system").Get(ctx, "autodeploy", metaGet)
	if l.Spec.LeaseTransitions == nil || *l.Spec.LeaseTransitions != 2 {
		t.Errorf("transitions = %v", l.Spec.LeaseTransitions)
	}
}

var metaGet = metav1.GetOptions{}
