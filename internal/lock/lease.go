package lock

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// Lease is a held coordination.k8s.io Lease: the lock of several hosts, or
// of runs inside the cluster, where no shared file exists. It follows the
// rules of client-go's leader election locks (holderIdentity, renewTime,
// leaseDurationSeconds; take over only an expired lease, with optimistic
// concurrency), but is held for one run, not for a process's life.
type Lease struct {
	client   coordclient.LeasesGetter
	ns, name string
	identity string
	stop     chan struct{}
	done     chan struct{}
}

// AcquireLease takes the Lease ns/name for identity, or returns a
// *HeldError naming its live holder. A holder that stopped renewing for
// duration (a crashed host) loses it. The lease is renewed in the
// background until Release.
func AcquireLease(ctx context.Context, c coordclient.LeasesGetter, ns, name, identity, command string, duration time.Duration, now func() time.Time) (*Lease, error) {
	leases := c.Leases(ns)
	secs := int32(duration.Seconds())
	t := metav1.NewMicroTime(now())
	spec := coordinationv1.LeaseSpec{HolderIdentity: &identity, LeaseDurationSeconds: &secs, AcquireTime: &t, RenewTime: &t}
	path := fmt.Sprintf("Lease %s/%s", ns, name)

	cur, err := leases.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{commandAnnotation: command}}, Spec: spec}
		if _, err := leases.Create(ctx, l, metav1.CreateOptions{}); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return nil, heldBy(path, nil) // another host created it first
			}
			return nil, fmt.Errorf("create %s: %w", path, err)
		}
	case err != nil:
		return nil, fmt.Errorf("get %s: %w", path, err)
	default:
		if holder := cur.Spec.HolderIdentity; holder != nil && *holder != "" && *holder != identity && !expired(cur, now()) {
			return nil, heldBy(path, cur)
		}
		next := cur.DeepCopy()
		next.Spec = spec
		if next.Annotations == nil {
			next.Annotations = map[string]string{}
		}
		next.Annotations[commandAnnotation] = command
		var n int32
		if cur.Spec.LeaseTransitions != nil {
			n = *cur.Spec.LeaseTransitions
		}
		if cur.Spec.HolderIdentity == nil || *cur.Spec.HolderIdentity != identity {
			n++
		}
		next.Spec.LeaseTransitions = &n
		// resourceVersion makes this a compare-and-swap: of two hosts taking
		// over an expired lease at once, one gets a conflict.
		if _, err := leases.Update(ctx, next, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsConflict(err) {
				return nil, heldBy(path, nil)
			}
			return nil, fmt.Errorf("update %s: %w", path, err)
		}
	}
	l := &Lease{client: c, ns: ns, name: name, identity: identity, stop: make(chan struct{}), done: make(chan struct{})}
	go l.renew(duration/3, now)
	return l, nil
}

const commandAnnotation = "autodeploy.dev/lock-command"

func expired(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return true
	}
	return now.After(l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

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

// renew keeps the lease ours while the run lasts.
func (l *Lease) renew(every time.Duration, now func() time.Time) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every)
			if cur, err := l.client.Leases(l.ns).Get(ctx, l.name, metav1.GetOptions{}); err == nil && cur.Spec.HolderIdentity != nil && *cur.Spec.HolderIdentity == l.identity {
				rt := metav1.NewMicroTime(now())
				cur.Spec.RenewTime = &rt
				_, _ = l.client.Leases(l.ns).Update(ctx, cur, metav1.UpdateOptions{})
			}
			cancel()
		}
	}
}

// Release stops renewing and gives the lease up, so the next run need not
// wait for it to expire.
func (l *Lease) Release() error {
	if l == nil {
		return nil
	}
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur, err := l.client.Leases(l.ns).Get(ctx, l.name, metav1.GetOptions{})
	if err != nil || cur.Spec.HolderIdentity == nil || *cur.Spec.HolderIdentity != l.identity {
		return err
	}
	empty := ""
	cur.Spec.HolderIdentity = &empty
	_, err = l.client.Leases(l.ns).Update(ctx, cur, metav1.UpdateOptions{})
	return err
}
