package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/clock"
)

// ErrLost is the cause of a held lock's context when the lock was lost: a
// Lease that could not be renewed before another host could take it.
var ErrLost = errors.New("the lock was lost")

// LeaseLocker is a coordination.k8s.io Lease: the lock of several hosts, or
// of runs inside the cluster, where no shared file exists. It follows the
// rules of client-go's leader election (k8s.io/client-go/tools/leaderelection):
// holderIdentity, renewTime and leaseDurationSeconds; take over only a lease
// whose record has not changed for leaseDuration as observed on this host's
// clock (never by comparing the other host's renewTime with our clock: the
// two clocks may disagree); give the lock up, cancelling the work, when it
// cannot be renewed within the renew deadline, before another host could
// take it. It is held for one command, not for a process's life.
type LeaseLocker struct {
	Client              coordclient.LeasesGetter
	Namespace, Name     string
	Identity            string
	Duration            time.Duration
	Clock               clock.WithTicker // clock.RealClock{} unless a test sets one
	confirmPollInterval time.Duration

	mu sync.Mutex
	// observed is the other holder's record as this locker last saw it,
	// and observedAt when, by our clock: a locker that keeps trying (the
	// watch's standby) takes over leaseDuration after the record last
	// changed, as client-go's LeaderElector does with its observedRecord,
	// instead of waiting for it again in confirmStale.
	observed   *coordinationv1.Lease
	observedAt time.Time
	// note is what the holder does now (Held.Note), written with the
	// next renewal.
	note string
}

func (l *LeaseLocker) clock() clock.WithTicker {
	if l.Clock == nil {
		return clock.RealClock{}
	}
	return l.Clock
}

func (l *LeaseLocker) path() string { return fmt.Sprintf("Lease %s/%s", l.Namespace, l.Name) }

// renewDeadline and retryPeriod, as client-go's defaults relate them to the
// lease duration (15 s lease, 10 s renew deadline, 2 s retry): a holder that
// could not renew for renewDeadline stops, leaving a margin before another
// host may take over at leaseDuration.
func (l *LeaseLocker) renewDeadline() time.Duration { return l.Duration * 2 / 3 }
func (l *LeaseLocker) retryPeriod() time.Duration   { return max(l.Duration/10, 100*time.Millisecond) }

// Acquire takes the Lease, or returns a *HeldError naming its live holder.
// A lease whose record looks stale is watched for leaseDuration of local
// time before it is taken over: a live holder renews it meanwhile.
func (l *LeaseLocker) Acquire(ctx context.Context, command string) (*Held, error) {
	leases := l.Client.Leases(l.Namespace)
	cur, err := leases.Get(ctx, l.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: l.Name, Namespace: l.Namespace}}
		l.fill(lease, command, nil)
		if _, err := leases.Create(ctx, lease, metav1.CreateOptions{}); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return nil, heldBy(l.path(), nil) // another host created it first
			}
			if apierrors.IsNotFound(err) {
				return nil, &NamespaceError{Lease: l.path(), Namespace: l.Namespace}
			}
			return nil, fmt.Errorf("create %s: %w", l.path(), err)
		}
		return l.start(ctx), nil
	case err != nil:
		return nil, fmt.Errorf("get %s: %w", l.path(), err)
	}
	if holder := cur.Spec.HolderIdentity; holder != nil && *holder != "" && *holder != l.Identity {
		switch {
		case l.unchangedFor(cur):
			// Watched since an earlier attempt: its holder is gone.
		case !l.looksStale(cur):
			l.observe(cur)
			return nil, heldBy(l.path(), cur)
		default:
			if cur, err = l.confirmStale(ctx, cur); err != nil {
				return nil, err
			}
		}
	}
	next := cur.DeepCopy()
	l.fill(next, command, cur)
	// resourceVersion makes this a compare-and-swap: of two hosts taking
	// over an expired lease at once, one gets a conflict.
	if _, err := leases.Update(ctx, next, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return nil, heldBy(l.path(), nil)
		}
		return nil, fmt.Errorf("update %s: %w", l.path(), err)
	}
	return l.start(ctx), nil
}

// observe remembers cur's record and, when it changed, the time it was
// first seen.
func (l *LeaseLocker) observe(cur *coordinationv1.Lease) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.observed == nil || !sameRecord(l.observed, cur) {
		l.observed, l.observedAt = cur.DeepCopy(), l.clock().Now()
	}
}

// unchangedFor reports whether an earlier attempt saw cur's record and it
// has not changed for the lease's duration since, by our clock.
func (l *LeaseLocker) unchangedFor(cur *coordinationv1.Lease) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.observed == nil || !sameRecord(l.observed, cur) {
		return false
	}
	d := l.Duration
	if cur.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*cur.Spec.LeaseDurationSeconds) * time.Second
	}
	return l.clock().Since(l.observedAt) >= d
}

// looksStale: by our clock the holder has not renewed for leaseDuration,
// or its renewTime is further in the future than a lease lasts (a skewed
// clock). Only a hint: confirmStale decides.
func (l *LeaseLocker) looksStale(cur *coordinationv1.Lease) bool {
	if cur.Spec.RenewTime == nil || cur.Spec.LeaseDurationSeconds == nil {
		return true
	}
	d := time.Duration(*cur.Spec.LeaseDurationSeconds) * time.Second
	age := l.clock().Since(cur.Spec.RenewTime.Time)
	return age > d || age < -d
}

// confirmStale watches the lease's record for its duration, on this host's
// clock. Any change (a renewal) means a live holder. The record, not the
// resourceVersion, is compared, as client-go does: any write (a label) moves
// the resourceVersion, only the holder moves its record.
func (l *LeaseLocker) confirmStale(ctx context.Context, seen *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	d := l.Duration
	if seen.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*seen.Spec.LeaseDurationSeconds) * time.Second
	}
	c := l.clock()
	start := c.Now()
	poll := l.confirmPollInterval
	if poll == 0 {
		poll = l.retryPeriod()
	}
	t := c.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C():
		}
		cur, err := l.Client.Leases(l.Namespace).Get(ctx, l.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", l.path(), err)
		}
		if !sameRecord(cur, seen) {
			if h := cur.Spec.HolderIdentity; h == nil || *h == "" {
				return cur, nil // released meanwhile
			}
			return nil, heldBy(l.path(), cur)
		}
		if c.Since(start) >= d {
			return cur, nil
		}
	}
}

// sameRecord compares what a holder writes, as client-go's leader election
// compares its LeaderElectionRecord: a renewal changes renewTime.
func sameRecord(a, b *coordinationv1.Lease) bool {
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	mt := func(p *metav1.MicroTime) time.Time {
		if p == nil {
			return time.Time{}
		}
		return p.Time
	}
	return str(a.Spec.HolderIdentity) == str(b.Spec.HolderIdentity) && mt(a.Spec.RenewTime).Equal(mt(b.Spec.RenewTime)) &&
		mt(a.Spec.AcquireTime).Equal(mt(b.Spec.AcquireTime))
}

func (l *LeaseLocker) fill(next *coordinationv1.Lease, command string, cur *coordinationv1.Lease) {
	secs := int32(l.Duration.Seconds())
	t := metav1.NewMicroTime(l.clock().Now())
	id := l.Identity
	var n int32
	if cur != nil && cur.Spec.LeaseTransitions != nil {
		n = *cur.Spec.LeaseTransitions
	}
	if cur != nil && (cur.Spec.HolderIdentity == nil || *cur.Spec.HolderIdentity != id) {
		n++
	}
	next.Spec = coordinationv1.LeaseSpec{HolderIdentity: &id, LeaseDurationSeconds: &secs, AcquireTime: &t, RenewTime: &t, LeaseTransitions: &n}
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	next.Annotations[commandAnnotation] = command
}

// start renews the lease in the background and returns the held lock,
// whose context is cancelled with ErrLost if renewing fails for the renew
// deadline, or the lease is found taken.
func (l *LeaseLocker) start(parent context.Context) *Held {
	ctx, cancel := context.WithCancelCause(parent)
	stop, done := make(chan struct{}), make(chan struct{})
	go l.renew(ctx, cancel, stop, done)
	h := &Held{ctx: ctx}
	h.note = func(what string) {
		l.mu.Lock()
		l.note = what
		l.mu.Unlock()
	}
	h.release = func() error {
		close(stop)
		<-done
		cancel(nil)
		return l.release()
	}
	return h
}

func (l *LeaseLocker) renew(ctx context.Context, cancel context.CancelCauseFunc, stop, done chan struct{}) {
	defer close(done)
	c := l.clock()
	every, retry, deadline := l.Duration/3, l.retryPeriod(), l.renewDeadline()
	last := c.Now()
	wait := every
	for {
		t := c.NewTimer(wait)
		select {
		case <-stop:
			t.Stop()
			return
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		rctx, rcancel := context.WithTimeout(context.Background(), retry)
		err := l.renewOnce(rctx)
		rcancel()
		var taken *HeldError
		switch {
		case err == nil:
			last, wait = c.Now(), every
			continue
		case errors.As(err, &taken):
			cancel(fmt.Errorf("%w: %s was taken by %s", ErrLost, l.path(), taken.Holder.Command))
			return
		case c.Since(last) >= deadline:
			cancel(fmt.Errorf("%w: %s could not be renewed for %s (last error: %v); another host may take it at %s", ErrLost, l.path(), c.Since(last).Round(time.Millisecond), err, l.Duration))
			return
		}
		wait = retry
	}
}

func (l *LeaseLocker) renewOnce(ctx context.Context) error {
	cur, err := l.Client.Leases(l.Namespace).Get(ctx, l.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if cur.Spec.HolderIdentity == nil || *cur.Spec.HolderIdentity != l.Identity {
		return heldBy(l.path(), cur)
	}
	rt := metav1.NewMicroTime(l.clock().Now())
	cur.Spec.RenewTime = &rt
	l.mu.Lock()
	if l.note != "" {
		if cur.Annotations == nil {
			cur.Annotations = map[string]string{}
		}
		cur.Annotations[commandAnnotation] = l.note
	}
	l.mu.Unlock()
	_, err = l.Client.Leases(l.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// release gives the lease up, so the next run need not wait for it.
func (l *LeaseLocker) release() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur, err := l.Client.Leases(l.Namespace).Get(ctx, l.Name, metav1.GetOptions{})
	if err != nil || cur.Spec.HolderIdentity == nil || *cur.Spec.HolderIdentity != l.Identity {
		return err
	}
	empty := ""
	cur.Spec.HolderIdentity = &empty
	_, err = l.Client.Leases(l.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// Holder reads who holds the lease, without taking it. For display only
// (status, hold's note), a holder counts while its renewTime is recent by
// our clock.
func (l *LeaseLocker) Holder(ctx context.Context) (Holder, bool, error) {
	cur, err := l.Client.Leases(l.Namespace).Get(ctx, l.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Holder{}, false, nil
	}
	if err != nil {
		// Not "not held": whether a run is in progress is unknown.
		return Holder{}, false, fmt.Errorf("cannot read %s: %w", l.path(), err)
	}
	if h := cur.Spec.HolderIdentity; h == nil || *h == "" {
		return Holder{}, false, nil
	}
	var he *HeldError
	errors.As(heldBy(l.path(), cur), &he)
	// A stale record is a holder that stopped without releasing (it
	// crashed): not held, but its record says who it was.
	return he.Holder, !l.looksStale(cur), nil
}

const commandAnnotation = "autodeploy.dev/lock-command"

func heldBy(path string, l *coordinationv1.Lease) error {
	h := Holder{Command: "another host"}
	if l != nil {
		if l.Spec.HolderIdentity != nil {
			h.Command = *l.Spec.HolderIdentity
		}
		if c := l.Annotations[commandAnnotation]; c != "" {
			h.Command += ": " + c
		}
		if l.Spec.AcquireTime != nil {
			h.Since = l.Spec.AcquireTime.Time
		}
	}
	return &HeldError{Path: path, Holder: h}
}

// NamespaceError: the Lease's namespace does not exist. The fix is the
// config's (exit 2), not the cluster's: a run said "an unexpected error"
// (exit 1; issue 18, ninth pass).
type NamespaceError struct{ Lease, Namespace string }

func (e *NamespaceError) Error() string {
	return fmt.Sprintf("create %s: namespace %s does not exist (set lock.leaseNamespace in the config to an existing namespace)", e.Lease, e.Namespace)
}
