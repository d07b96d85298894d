package deploy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
)

// awaitPolicies waits, on Flux < 2.7, until each configured policy over a
// repository whose rescan found new tags selects what that scan says it
// must (flux.AwaitPolicies): issue 17 item 11, a Flux 2.6 policy is
// written with the old tags before its repository's scan is in. A
// suspended policy is not re-evaluated by Flux, so it is not waited for.
// A policy still behind at the bound is logged: this run deploys what it
// selects, and the next run the scan's tag.
func (r *Runner) awaitPolicies(ctx context.Context, api flux.API, repoOuts []flux.Outcome, policies map[string]*flux.Policy) {
	scans := map[flux.Ref]flux.Scan{}
	for _, o := range repoOuts {
		if o.OK && o.ScanChanged {
			scans[o.Ref] = o.Scan
		}
	}
	var want []flux.Awaited
	for _, key := range slices.Sorted(maps.Keys(policies)) {
		p := policies[key]
		scan, changed := scans[flux.Ref{Namespace: p.RepoNamespace, Name: p.RepoName}]
		if !changed || p.Suspended {
			continue
		}
		tag, _ := p.Order.Expect(scan)
		want = append(want, flux.Awaited{Ref: flux.Ref{Namespace: p.Namespace, Name: p.Name}, Tag: tag})
	}
	for _, l := range flux.AwaitPolicies(ctx, r.Dynamic, api.Policies(), want, PolicyEvaluationBound) {
		r.Log.Warn("ImagePolicy does not select its repository's newest scan yet", "policy", l.Ref.String(), "expected", l.Tag, "selected", l.Selected, "waited", PolicyEvaluationBound)
	}
}

// budget derives every timeout of a run from its deadline
// (config.RunDeadline = flux.reconcileTimeout + runTimeout + one rollback +
// notifications): the run's context carries the deadline, and the budget
// hands out each step's share of it, so that no step has a bound of its own
// outside it.
//
//   - Flux waits (the rescan, the policies' re-evaluation, an exclusion's
//     rescan) share one flux.reconcileTimeout (fluxWait, fluxLeft).
//   - Rollouts and their health checks share runTimeout (rollouts): a
//     service whose turn comes after it is spent is not run, and a rollout
//     cut by it is left unverified, never judged (errBudget).
//   - Each rollout waits at most the service's rolloutTimeout within that
//     (rollout).
//   - A rollback gets its service's rolloutTimeout even when runTimeout is
//     spent (leaving a broken rollout in place is worse than overrunning):
//     the deadline reserves one rollback for it (rollback).
//   - Bringing git along and making it go back start alongside the
//     rollout or the rollback, in the run's context (so within its
//     deadline, and stopped by a signal or a lost lock); each of their
//     waits is bounded by gitops.FollowBound (GoesBack has two: for the
//     policy to move, then for the automation).
//
// Issue 17 item 12: with no controller answering, a run waited
// flux.reconcileTimeout for the rescan and as long again for an
// exclusion's rescan, 2m10s with one rollback, and cron's next run was
// skipped; a repository that did not answer the run's rescan is therefore
// not waited on again (fluxSilent).
type budget struct {
	// rolloutsCtx ends when runTimeout is spent (within the run's
	// deadline).
	rolloutsCtx    context.Context
	cancelRollouts context.CancelFunc

	mu     sync.Mutex
	spent  time.Duration     // of flux.reconcileTimeout
	silent map[flux.Ref]bool // repositories that did not answer this run's rescan
}

// startRollouts opens the rollouts' share of the budget: runTimeout from
// now, within ctx (the run's deadline). stop releases it.
func (r *Runner) startRollouts(ctx context.Context) (stop func()) {
	r.budget.rolloutsCtx, r.budget.cancelRollouts = context.WithTimeout(ctx, r.Config.RunTimeout)
	return r.budget.cancelRollouts
}

// rolloutsSpent: runTimeout is spent; no rollout starts, and one under way
// is left unverified.
func (r *Runner) rolloutsSpent() bool { return r.budget.rolloutsCtx.Err() != nil }

// rollout bounds one service's rollout wait: its rolloutTimeout within
// what is left of runTimeout.
func (r *Runner) rollout(s config.Service) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.budget.rolloutsCtx, s.RolloutTimeout)
}

// checks bounds a health check after the rollout: what is left of
// runTimeout.
func (r *Runner) checks() context.Context { return r.budget.rolloutsCtx }

// rollback bounds an automatic rollback: the service's rolloutTimeout,
// within the run's deadline (ctx) but not within runTimeout.
func (r *Runner) rollback(ctx context.Context, s config.Service) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.RolloutTimeout)
}

// startFluxWaits opens the run's account (reconcile is the run's first wait
// on Flux) and returns the context of the first wait, with done to book it.
func (r *Runner) startFluxWaits(ctx context.Context) (context.Context, func()) {
	r.budget.mu.Lock()
	r.budget.spent, r.budget.silent = 0, nil
	r.budget.mu.Unlock()
	return r.fluxWait(ctx)
}

// fluxWait returns ctx bounded by what is left of the run's Flux budget
// (zero when it is spent: the context is done at once), and done, which
// books the time the wait took.
func (r *Runner) fluxWait(ctx context.Context) (context.Context, func()) {
	left := r.fluxLeft()
	start := r.Now()
	wctx, cancel := context.WithTimeout(ctx, max(left, 0))
	return wctx, func() {
		cancel()
		r.budget.mu.Lock()
		defer r.budget.mu.Unlock()
		r.budget.spent += r.Now().Sub(start)
	}
}

// fluxLeft is what is left of the run's Flux budget.
func (r *Runner) fluxLeft() time.Duration {
	r.budget.mu.Lock()
	defer r.budget.mu.Unlock()
	return r.Config.Flux.ReconcileTimeout - r.budget.spent
}

// FluxSilentWarning begins the run's warning when repositories did not
// answer its rescan: status shows the run's warnings.
const FluxSilentWarning = "Flux has stopped answering"

// noteSilent records the repositories that did not answer the rescan and
// returns the run's warning about them (none when all answered).
func (r *Runner) noteSilent(outs []flux.Outcome) []string {
	var silent []string
	r.budget.mu.Lock()
	for _, o := range outs {
		if o.NoAnswer {
			if r.budget.silent == nil {
				r.budget.silent = map[flux.Ref]bool{}
			}
			r.budget.silent[o.Ref] = true
			silent = append(silent, o.Ref.String())
		}
	}
	r.budget.mu.Unlock()
	if len(silent) == 0 {
		return nil
	}
	why := fmt.Sprintf("%d of %d ImageRepositories did not answer the rescan within %s (%s): is image-reflector-controller running? This run does not wait on them again",
		len(silent), len(outs), r.Config.Flux.ReconcileTimeout, strings.Join(silent, ", "))
	// status shows a WARN line as its message and fields (runlog.LastRun):
	// "Flux has stopped answering reason=...".
	r.Log.Warn(FluxSilentWarning, "reason", why)
	w := FluxSilentWarning + ": " + why
	r.progress("", "warning: "+w)
	return []string{w}
}

// fluxSilent says whether repo did not answer this run's rescan.
func (r *Runner) fluxSilent(repo flux.Ref) bool {
	r.budget.mu.Lock()
	defer r.budget.mu.Unlock()
	return r.budget.silent[repo]
}
