package lock

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	krt "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

// The lease rules, on client-go's fake and fake clocks (the real cluster
// test of two hosts racing is in internal/cli). Each host has its own
// clock: they need not agree.
var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func host(c *fake.Clientset, id string, clk *clocktesting.FakeClock) *LeaseLocker {
	return &LeaseLocker{Client: c.CoordinationV1(), Namespace: "flux-system", Name: "autodeploy", Identity: id, Duration: 30 * time.Second, Clock: clk}
}

// acquire runs Acquire while stepping clk whenever Acquire waits on it:
// time passes only when the code under test asks for it.
func acquire(t *testing.T, l *LeaseLocker, clk *clocktesting.FakeClock, command string) (*Held, error) {
	t.Helper()
	type result struct {
		h   *Held
		err error
	}
	ch := make(chan result, 1)
	go func() {
		h, err := l.Acquire(context.Background(), command)
		ch <- result{h, err}
	}()
	for {
		select {
		case r := <-ch:
			return r.h, r.err
		default:
		}
		if clk.HasWaiters() {
			clk.Step(time.Second)
		}
		runtime.Gosched()
	}
}

func TestLeaseHeldThenReleased(t *testing.T) {
	c := fake.NewSimpleClientset()
	ca, cb := clocktesting.NewFakeClock(t0), clocktesting.NewFakeClock(t0)
	a, err := acquire(t, host(c, "host-a/1", ca), ca, "autodeploy run r1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = acquire(t, host(c, "host-b/2", cb), cb, "autodeploy run r2")
	var he *HeldError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "host-a/1: autodeploy run r1") {
		t.Fatalf("second host: %v", err)
	}
	if h, held, err := host(c, "host-b/2", cb).Holder(context.Background()); err != nil || !held || !strings.HasPrefix(h.Command, "host-a/1") {
		t.Errorf("Holder = %+v, %v, %v", h, held, err)
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	// Released: anyone may take it at once.
	b, err := acquire(t, host(c, "host-b/2", cb), cb, "autodeploy run r3")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	b.Release()
	l, _ := c.CoordinationV1().Leases("flux-system").Get(context.Background(), "autodeploy", metav1.GetOptions{})
	if l.Spec.LeaseTransitions == nil || *l.Spec.LeaseTransitions != 1 {
		t.Errorf("transitions = %v", l.Spec.LeaseTransitions)
	}
}

// A holder that crashed (no renewals) is taken over after the lease
// duration, observed on the taker's own clock.
func TestLeaseTakeoverOfACrashedHolder(t *testing.T) {
	c := fake.NewSimpleClientset()
	writeLease(t, c, "host-a/1", t0)
	cb := clocktesting.NewFakeClock(t0.Add(time.Minute)) // by b's clock, a's renewal is a minute old
	b, err := acquire(t, host(c, "host-b/2", cb), cb, "autodeploy run r2")
	if err != nil {
		t.Fatalf("takeover of a crashed holder: %v", err)
	}
	defer b.Release()
	if cb.Since(t0.Add(time.Minute)) < 30*time.Second {
		t.Errorf("took over after %s of local observation, want the lease duration (30s)", cb.Since(t0.Add(time.Minute)))
	}
}

// A locker that keeps trying (the watch's standby) has watched the record
// since its first attempt: once the holder stops renewing it takes over
// leaseDuration after the record last changed, as client-go's
// LeaderElector does, not after another leaseDuration of confirmStale.
func TestLeaseStandbyTakesOverOneDurationAfterTheLastRenewal(t *testing.T) {
	c := fake.NewSimpleClientset()
	writeLease(t, c, "host-a/1", t0)
	cb := clocktesting.NewFakeClock(t0)
	b := host(c, "host-b/2", cb)
	if _, err := b.Acquire(context.Background(), "autodeploy watch"); err == nil {
		t.Fatal("took a live lease")
	}
	// a renews once, 10 s later, then dies.
	cb.Step(10 * time.Second)
	writeLease(t, c, "host-a/1", t0.Add(10*time.Second))
	if _, err := b.Acquire(context.Background(), "autodeploy watch"); err == nil {
		t.Fatal("took a lease renewed just now")
	}
	cb.Step(29 * time.Second)
	if _, err := b.Acquire(context.Background(), "autodeploy watch"); err == nil {
		t.Fatal("took over before the lease duration passed")
	}
	cb.Step(time.Second)
	start := cb.Now()
	h, err := acquire(t, b, cb, "autodeploy watch")
	if err != nil {
		t.Fatalf("standby did not take over 30 s after the last renewal: %v", err)
	}
	defer h.Release()
	if waited := cb.Since(start); waited != 0 {
		t.Errorf("waited %s more in confirmStale: the record was watched already", waited)
	}
}

// A holder's Note goes into the Lease with its next renewal; a crashed
// holder's record reads as not held, naming it.
func TestLeaseNoteAndCrashedRecord(t *testing.T) {
	c := fake.NewSimpleClientset()
	ca := clocktesting.NewFakeClock(t0)
	a := host(c, "host-a/1", ca)
	h, err := acquire(t, a, ca, "autodeploy watch")
	if err != nil {
		t.Fatal(err)
	}
	h.Note("autodeploy watch last-event=x")
	if err := a.renewOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	cb := clocktesting.NewFakeClock(t0)
	got, held, err := host(c, "host-b/2", cb).Holder(context.Background())
	if err != nil || !held || !strings.Contains(got.Command, "host-a/1: autodeploy watch last-event=x") {
		t.Fatalf("Holder = %+v, %v, %v; want a's note", got, held, err)
	}
	cb.Step(time.Minute) // a stopped renewing: it crashed
	got, held, err = host(c, "host-b/2", cb).Holder(context.Background())
	if err != nil || held || !strings.Contains(got.Command, "host-a/1") {
		t.Errorf("Holder of a crashed holder = %+v, %v, %v; want not held, naming host-a/1", got, held, err)
	}
}

// A live holder whose clock is behind ours writes renewTimes that look
// stale by our clock: comparing them with our clock would take its lock
// while it deploys. Watching the record shows it renewing.
func TestLeaseLiveHolderWithASkewedClockKeepsIt(t *testing.T) {
	c := fake.NewSimpleClientset()
	// a's clock is 10 minutes behind b's; a renews every 10 s of its time,
	// which the reactor plays before each of b's reads.
	renew := t0.Add(-10 * time.Minute)
	writeLease(t, c, "host-a/1", renew)
	c.PrependReactor("get", "leases", func(k8stesting.Action) (bool, krt.Object, error) {
		renew = renew.Add(10 * time.Second)
		writeLease(t, c, "host-a/1", renew)
		return false, nil, nil
	})
	cb := clocktesting.NewFakeClock(t0)
	_, err := acquire(t, host(c, "host-b/2", cb), cb, "autodeploy run r2")
	var he *HeldError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "host-a/1") {
		t.Fatalf("b took a live lease: %v", err)
	}
}

// When renewals fail for the renew deadline, the holder's context is
// cancelled with ErrLost before another host could take the lease.
func TestLeaseLostWhenRenewalsFail(t *testing.T) {
	c := fake.NewSimpleClientset()
	ca := clocktesting.NewFakeClock(t0)
	a, err := acquire(t, host(c, "host-a/1", ca), ca, "autodeploy run r1")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	c.PrependReactor("update", "leases", func(k8stesting.Action) (bool, krt.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd is restarting")
	})
	untilLost(a, ca)
	cause := context.Cause(a.Context())
	if !errors.Is(cause, ErrLost) || !strings.Contains(cause.Error(), "could not be renewed") {
		t.Fatalf("cause = %v", cause)
	}
	if lost := ca.Since(t0); lost >= 30*time.Second {
		t.Errorf("gave up after %s: another host could take the lease at 30s", lost)
	}
}

// A lease taken by another host (after a long pause of this one) is lost
// at the next renewal.
func TestLeaseLostWhenTaken(t *testing.T) {
	c := fake.NewSimpleClientset()
	ca := clocktesting.NewFakeClock(t0)
	a, err := acquire(t, host(c, "host-a/1", ca), ca, "autodeploy run r1")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	writeLease(t, c, "host-b/2", t0)
	untilLost(a, ca)
	if cause := context.Cause(a.Context()); !errors.Is(cause, ErrLost) || !strings.Contains(cause.Error(), "taken by host-b/2") {
		t.Fatalf("cause = %v", cause)
	}
}

func writeLease(t *testing.T, c *fake.Clientset, holder string, renew time.Time) {
	t.Helper()
	secs := int32(30)
	rt := metav1.NewMicroTime(renew)
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "autodeploy", Namespace: "flux-system"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &rt, AcquireTime: &rt}}
	gvr := schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}
	if _, err := c.Tracker().Get(gvr, "flux-system", "autodeploy"); err == nil {
		if err := c.Tracker().Update(gvr, l, "flux-system"); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := c.Tracker().Create(gvr, l, "flux-system"); err != nil {
		t.Fatal(err)
	}
}

// untilLost steps the holder's clock whenever it waits, until its held
// context ends.
func untilLost(h *Held, clk *clocktesting.FakeClock) {
	for h.Context().Err() == nil {
		if clk.HasWaiters() {
			clk.Step(time.Second)
		}
		runtime.Gosched()
	}
}

// A Lease that cannot be read is an error naming it, never "not held":
// status said "no run in progress" under a Role without get leases (issue
// 18, item 6). The API's error stays inside (IsForbidden).
func TestLeaseHolderUnreadable(t *testing.T) {
	c := fake.NewClientset()
	c.PrependReactor("get", "leases", func(k8stesting.Action) (bool, krt.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "autodeploy", errors.New(`User "ro" cannot get resource "leases"`))
	})
	_, held, err := host(c, "host-b/2", clocktesting.NewFakeClock(t0)).Holder(context.Background())
	if held || err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "cannot read Lease flux-system/autodeploy") {
		t.Fatalf("Holder = %v, %v", held, err)
	}
}

// A Lease namespace that does not exist is the config's to fix: a typed
// error the CLI maps to exit 2, naming the key.
func TestLeaseNamespaceMissing(t *testing.T) {
	c := fake.NewClientset()
	c.PrependReactor("create", "leases", func(k8stesting.Action) (bool, krt.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "flux-system")
	})
	_, err := acquire(t, host(c, "host-a/1", clocktesting.NewFakeClock(t0)), clocktesting.NewFakeClock(t0), "autodeploy run")
	var ne *NamespaceError
	if !errors.As(err, &ne) || !strings.Contains(err.Error(), "set lock.leaseNamespace in the config to an existing namespace") {
		t.Fatalf("Acquire = %v, want a NamespaceError naming lock.leaseNamespace", err)
	}
}
