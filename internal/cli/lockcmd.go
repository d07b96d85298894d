package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
)

// locker is the configured lock (file or Lease): the one every command
// takes or probes.
func locker(f *Factory, cfg *config.Config, clients *kube.Clients) lock.Locker {
	if cfg.Lock.Type != config.LockLease {
		return &lock.FileLocker{Path: cfg.LockFile}
	}
	return &lock.LeaseLocker{Client: clients.Kube.CoordinationV1(), Namespace: cfg.Lock.LeaseNamespace, Name: cfg.Lock.LeaseName,
		Identity: lockIdentity(f), Duration: cfg.Lock.LeaseDuration}
}

// takeLock takes the configured lock for command, waiting up to wait (0:
// not at all) and calling waiting once if it has to wait. Work under the
// lock uses the Held's context: it ends if the lock is lost.
func takeLock(ctx context.Context, f *Factory, cfg *config.Config, clients *kube.Clients, command string, wait time.Duration, waiting func(lock.Holder)) (*lock.Held, error) {
	h, err := lock.Wait(ctx, locker(f, cfg, clients), command, wait, waiting)
	if err != nil {
		return nil, clients.Classify(err)
	}
	return h, nil
}

// holderError is why the lock's holder could not be read, said as such
// (status and hold's note would otherwise show no run in progress), with
// the fix when RBAC refused it: the Role of an older `manifests rbac
// --read-only` had no get on leases. The error is classified first: an
// unreachable server is said as every command says it.
func holderError(clients *kube.Clients, err error) error {
	err = clients.Classify(err)
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("%w: whether a run is in progress is unknown; apply the Role of `autodeploy manifests rbac` (--read-only for status alone), which grants get leases", err)
	}
	return fmt.Errorf("%w: whether a run is in progress is unknown", err)
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
