package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
)

// takeLock takes the configured lock (file or Lease) for command, waiting
// up to wait (0: not at all) and calling waiting once if it has to wait.
// It returns the release function.
func takeLock(ctx context.Context, f *Factory, cfg *config.Config, clients *kube.Clients, command string, wait time.Duration, waiting func(lock.Holder)) (func(), error) {
	now := time.Now
	try := func() (func(), error) {
		if cfg.Lock.Type != config.LockLease {
			l, err := lock.TryAcquire(cfg.LockFile, command, now())
			if err != nil {
				return nil, err
			}
			return func() { _ = l.Release() }, nil
		}
		l, err := lock.AcquireLease(ctx, clients.Kube.CoordinationV1(), cfg.Lock.LeaseNamespace, cfg.Lock.LeaseName, lockIdentity(f), command, cfg.Lock.LeaseDuration, now)
		if err != nil {
			return nil, clients.Classify(err)
		}
		return func() { _ = l.Release() }, nil
	}
	return lock.Wait(ctx, wait, try, waiting)
}

// lockIdentity names this process in a Lease: host and pid, unless
// AUTODEPLOY_LOCK_IDENTITY says otherwise (two instances in one network
// namespace, tests).
func lockIdentity(f *Factory) string {
	if id := f.Getenv("AUTODEPLOY_LOCK_IDENTITY"); id != "" {
		return id
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}
