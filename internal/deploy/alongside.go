package deploy

import "context"

// alongside is a follow-up started where the decision for it is made and
// run beside the wait it goes with (bring git along beside a rollout, the
// exclusion beside a rollback), in the run's context: a signal or the
// run's deadline stops it too. Its owner ends it explicitly, by Wait (the
// follow-up is wanted: it finishes, within its own bounds) or Stop (no
// longer wanted: cancelled). A nil *alongside does nothing.
type alongside struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startAlongside(ctx context.Context, f func(context.Context)) *alongside {
	ctx, cancel := context.WithCancel(ctx)
	a := &alongside{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		f(ctx)
	}()
	return a
}

// Wait lets the follow-up finish.
func (a *alongside) Wait() {
	if a == nil {
		return
	}
	<-a.done
	a.cancel()
}

// Stop cancels the follow-up and waits until it has returned.
func (a *alongside) Stop() {
	if a == nil {
		return
	}
	a.cancel()
	<-a.done
}
