package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/health"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
	"github.com/autodeploy-dev/autodeploy/internal/ui"
)

// Outcome is how a service's part of a run ended.
type Outcome string

const (
	OutcomeUpToDate Outcome = "up-to-date"
	OutcomeSkipped  Outcome = "skipped"
	OutcomePlanned  Outcome = "planned" // --dry-run
	OutcomeDeployed Outcome = "deployed"
	OutcomeVerified Outcome = "verified"
	// OutcomeSoaking: a verified rollout's soak goes on; a later run
	// carries it on. OutcomeSoaked: it ended with nothing against the
	// image.
	OutcomeSoaking        Outcome = "soaking"
	OutcomeSoaked         Outcome = "soaked"
	OutcomeFailed         Outcome = "failed"      // auto-rollback off: left as it is
	OutcomeRolledBack     Outcome = "rolled-back" // failed, and the previous revision is back
	OutcomeRollbackFailed Outcome = "rollback-failed"
	OutcomeInterrupted    Outcome = "interrupted"
	OutcomeNotRun         Outcome = "not-run" // the run's budget was spent before its turn, or its objects could not be read
	// OutcomeSuperseded: someone else (a person, Flux) changed the
	// Deployment during autodeploy's rollout; their change stands.
	OutcomeSuperseded Outcome = "superseded"
	// OutcomeUnverified: the rollout could not be judged (the run's budget
	// ran out, the API could not be read); the next run verifies it.
	OutcomeUnverified Outcome = "unverified"
)

// ServiceResult is one service's line of the summary.
type ServiceResult struct {
	Decision
	Outcome Outcome `json:"outcome"`
	Error   string  `json:"error,omitempty"`
	// Forbidden: RBAC refused a request the deploy needed.
	Forbidden bool          `json:"forbidden,omitempty"`
	Duration  time.Duration `json:"durationNanos"`
	// Patched is when the API server accepted autodeploy's patch of the
	// image (zero when none): the watch's policy-change-to-patch latency.
	Patched time.Time `json:"patched,omitzero"`
	// Ended is when its verdict was reached (zero when it did nothing).
	Ended time.Time `json:"ended,omitzero"`
	// NewProblem: the Alert is news this run (it appeared or changed, and
	// was notified), or it could not be recorded on the Deployment; false
	// for a problem people already heard of (alert), and where there is no
	// Deployment to record it on (the caller's business).
	NewProblem bool `json:"newProblem,omitempty"`
	// Soak is how the soak this run watched ended, when it did: SoakPassed
	// or SoakFailed (the outcome then says how the rollback went).
	Soak string `json:"soak,omitempty"`
}

// Ends of a soak (ServiceResult.Soak).
const (
	SoakPassed = "passed"
	SoakFailed = "failed"
)

// Result is the summary of a run.
type Result struct {
	RunID     string          `json:"runId"`
	Started   time.Time       `json:"started"`
	Duration  time.Duration   `json:"durationNanos"`
	DryRun    bool            `json:"dryRun"`
	FluxAPI   string          `json:"fluxImageAPI"`
	Warnings  []string        `json:"warnings,omitempty"`
	Services  []ServiceResult `json:"services"`
	Cancelled bool            `json:"interrupted,omitempty"`
	// PolicySeen is when the watch saw the ImagePolicy change this run
	// acts on (Options.PolicySeen): the start of its latency metrics.
	PolicySeen time.Time `json:"policySeen,omitzero"`
}

// Runner carries out `autodeploy run`.
type Runner struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	Config  *config.Config
	Log     *slog.Logger
	Now     func() time.Time
	// Progress, when set, receives one human line per step (a TTY, -v),
	// one call at a time.
	Progress func(service, msg string)
	// Health runs a health check; health.Check unless replaced. A
	// *health.Error says whom a failure blames (Answered: the image).
	Health func(ctx context.Context, h config.Health, image, tag string) error
	// Notify tells people about deploys and failures; nil sends nothing.
	Notify *notify.Sender
	// Grace overrides rollout.DefaultGrace (tests).
	Grace time.Duration

	api flux.API // the image API of this run's cluster
	// ignoreWindows is this run's Options.IgnoreWindows, for every plan.
	ignoreWindows bool

	soaks      []pendingSoak // watched once every service had its turn
	promoteNow *PromoteNow   // autodeploy promote
	mu         sync.Mutex
	warnings   []string             // besides the rescan's (bringGitAlong)
	patched    map[string]time.Time // service -> when its patch was accepted
	progressMu sync.Mutex           // serialises Progress (see progress)

	budget budget // this run's share of its deadline for each step (budget.go)
}

var defaultHealth = health.Check

// Options of one run.
type Options struct {
	DryRun      bool
	NoReconcile bool
	// Services limits the run to these names (all when empty).
	Services []string
	// IgnoreWindows deploys outside the services' deploy windows (run
	// --ignore-windows, an emergency); logged.
	IgnoreWindows bool
	// Promote is `autodeploy promote`: a promotion now, for one service.
	Promote *PromoteNow
	// PolicySeen is when the watch saw the policy change that started
	// this run (zero otherwise); it goes into the Result.
	PolicySeen time.Time
}

// PromoteNow is a promotion asked for by a person (autodeploy promote): it
// skips promote.after, never the target's own checks (windows, rollout,
// health, soak, rollback).
type PromoteNow struct {
	Service string
	// Image, when set, is promoted instead of what the source runs.
	Image  string
	By     string
	Reason string
	// Force promotes an image remembered as failed in the source or the
	// target.
	Force bool
}

// fewServices is how many services a run reads one by one rather than
// with a LIST per namespace.
const fewServices = 10

// snapshot reads every service's objects with one LIST per namespace,
// after the rescan (unless NoReconcile): the start of a full run.
func (r *Runner) snapshot(ctx context.Context, api flux.API, services []config.Service, o Options, res *Result) ([]Input, error) {
	policies, err := r.listPolicies(ctx, api, services)
	if err != nil {
		return nil, err
	}
	if !o.NoReconcile && !o.DryRun {
		res.Warnings = r.reconcile(ctx, api, configured(policies, services))
		if ctx.Err() != nil {
			res.Cancelled = true
			return nil, ctx.Err()
		}
		// Read again: the rescan is the reason the run waited.
		if policies, err = r.listPolicies(ctx, api, services); err != nil {
			return nil, err
		}
	}
	return r.read(ctx, services, policies)
}

// notePatched records when a service's patch was accepted.
func (r *Runner) notePatched(svc string, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.patched == nil {
		r.patched = map[string]time.Time{}
	}
	r.patched[svc] = t
}

func (r *Runner) patchedAt(svc string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.patched[svc]
}

// Run does one pass: rescan, plan, roll out one service after another.
// The returned error is for failures of the run as a whole (cluster
// unreachable, Flux missing, interrupted); a service that fails is in the
// Result and never stops the others.
func (r *Runner) Run(ctx context.Context, runID string, o Options) (*Result, error) {
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Health == nil {
		r.Health = defaultHealth
	}
	res := &Result{RunID: runID, Started: r.Now(), DryRun: o.DryRun, PolicySeen: o.PolicySeen}
	defer func() { res.Duration = r.Now().Sub(res.Started) }()
	// The one deadline of the whole run (config.RunDeadline): every step
	// has its own bound within it; this catches what would hang anyway.
	ctx, cancelRun := context.WithTimeout(ctx, r.Config.RunDeadline())
	defer cancelRun()
	services := r.Config.Services
	if len(o.Services) > 0 {
		services = slices.DeleteFunc(slices.Clone(services), func(s config.Service) bool { return !slices.Contains(o.Services, s.Name) })
	}
	r.Log.Info("run started", "services", len(services), "dryRun", o.DryRun)
	r.ignoreWindows, r.promoteNow = o.IgnoreWindows, o.Promote
	if o.IgnoreWindows {
		r.Log.Warn("deploy windows ignored (--ignore-windows): services deploy outside their windows")
	}

	api, err := flux.Detect(ctx, r.Kube.Discovery())
	if err != nil {
		return res, r.stopped(ctx, res, err)
	}
	res.FluxAPI, r.api = api.Version, api
	var inputs []Input
	if len(o.Services) > 0 && len(services) <= fewServices && (o.NoReconcile || o.DryRun) {
		// A run of a few services (the watch's policy change, run
		// --service) reads each one's objects (readService, 3 requests)
		// instead of LISTing whole namespaces: with 500 services in one,
		// those LISTs made a policy change's patch 400 ms late
		// (BenchmarkWatchPolicyChangeToPatch).
		inputs, err = r.readEach(ctx, api, services)
	} else {
		inputs, err = r.snapshot(ctx, api, services, o, res)
	}
	if err != nil {
		return res, r.stopped(ctx, res, err)
	}

	defer r.startRollouts(ctx)()
	r.soaks = nil
	for _, in := range inputs {
		in.Now, in.IgnoreWindows, in.PromoteNow = r.Now(), r.ignoreWindows, r.promoteFor(in.Service)
		dec := Plan(in)
		sr := ServiceResult{Decision: dec}
		log := r.Log.With("svc", dec.Service)
		if dec.HoldExpired && !o.DryRun && ctx.Err() == nil {
			// Before the levers: a rollback's hold keeps them until it
			// goes.
			r.releaseExpiredHold(ctx, in.Service, log)
		}
		if !o.DryRun && ctx.Err() == nil && in.Deployment != nil {
			r.releaseLevers(ctx, in, log)
		}
		act := !o.DryRun && ctx.Err() == nil && (dec.Action == Deploy || dec.Action == Verify || dec.Action == Soak || dec.StaleMarks)
		if !act {
			log.Info("plan", "action", dec.Action, "current", dec.Current, "target", dec.Target, "reason", dec.Reason)
		}
		switch {
		case ctx.Err() != nil:
			sr.Outcome = OutcomeInterrupted
		case o.DryRun:
			sr.Outcome = OutcomePlanned
		case act:
			start := r.Now()
			sr.Decision, sr.Outcome, err = r.act(ctx, dec, in.Service, api, log)
			sr.Ended = r.Now()
			sr.Duration = sr.Ended.Sub(start)
			sr.Patched = r.patchedAt(dec.Service)
			if err != nil {
				sr.Error = err.Error()
				sr.Forbidden = apierrors.IsForbidden(err)
			}
			switch {
			case sr.Action == Deploy || sr.Action == Verify:
				log.Info("service done", "outcome", sr.Outcome, "duration", sr.Duration)
				r.notify(ctx, runID, sr, err)
			}
		case dec.Action == UpToDate:
			sr.Outcome = OutcomeUpToDate
			if _, failed := ParseFailedImage(in.Deployment.Annotations); failed {
				// Flux may have applied the newer image from git before
				// this run: a rollback's exclusion can go now too.
				r.releaseExclusions(ctx, in, dec, log)
			}
		default:
			sr.Outcome = r.skipped(dec, log)
		}
		if !o.DryRun && ctx.Err() == nil && in.Deployment != nil {
			sr.NewProblem = r.alert(ctx, runID, in.Deployment, sr.Decision, log)
		}
		res.Services = append(res.Services, sr)
	}
	r.finishSoaks(ctx, runID, res)
	r.mu.Lock()
	res.Warnings, r.warnings = append(res.Warnings, r.warnings...), nil
	r.mu.Unlock()
	if ctx.Err() != nil {
		return res, r.stopped(ctx, res, ctx.Err())
	}
	r.Log.Info("run finished", "duration", r.Now().Sub(res.Started))
	return res, nil
}

// stopped is how a run ends on err: when its context is done (a signal,
// its deadline), with the line saying so, wherever it was. A run stopped
// in its rescan ended without one, and its command logged "run failed",
// while one stopped in its rollouts was interrupted (issue 18, fifth
// pass); a failure of the run's own stays err, for the command to log.
func (r *Runner) stopped(ctx context.Context, res *Result, err error) error {
	if ctx.Err() == nil {
		return err
	}
	res.Cancelled = true
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		r.Log.Error("run stopped at its deadline: the lock is released; the next run verifies what was left unverified", "deadline", r.Config.RunDeadline())
		return fmt.Errorf("%w: the run reached its deadline (%s)", ErrDeadline, r.Config.RunDeadline())
	}
	r.Log.Warn("run interrupted: the lock is released; the next run verifies what was left unverified")
	return ctx.Err()
}

// PolicyEvaluationBound is the longest a run waits, on Flux < 2.7, for the
// policies of a repository whose rescan found new tags to be re-evaluated
// (see flux.AwaitPolicies); within flux.reconcileTimeout.
const PolicyEvaluationBound = 5 * time.Second

// ErrDeadline: the run was stopped at config.RunDeadline.
var ErrDeadline = errors.New("stopped")

// alert tells people once about a problem that needs them (dec.Alert): the
// key of the last one notified is kept on the Deployment, and cleared once
// the problem is gone. Nothing is written while nothing changes. It
// returns whether the problem is news (ServiceResult.NewProblem).
func (r *Runner) alert(ctx context.Context, runID string, d *appsv1.Deployment, dec Decision, log *slog.Logger) bool {
	if d.Annotations[AnnAlerted] == dec.Alert {
		return false
	}
	if _, err := rollout.Annotate(ctx, r.Kube, d, map[string]string{AnnAlerted: dec.Alert}); err != nil {
		// Not sent either: the next run tries both again, rather than
		// notifying every run without being able to remember it. Cron's
		// line still says it: unrecorded, it would never be heard.
		log.Warn("could not record the problem's notification; the next run tries again", "error", err)
		return dec.Alert != "" && !strings.HasPrefix(dec.Alert, AlertOutsideWindow) // news, not a problem
	}
	if dec.Alert == "" {
		return false
	}
	// Sent even when the run is interrupted (WithoutCancel, as notify):
	// the alert is recorded above, so a notification dropped now would
	// never be sent; Send bounds itself with each notifier's timeout.
	if strings.HasPrefix(dec.Alert, AlertOutsideWindow) {
		r.Notify.Send(context.WithoutCancel(ctx), notify.Event{Kind: notify.OutsideWindow, Level: "info", Service: dec.Service, Time: r.Now().UTC(), RunID: runID,
			From: dec.Current, To: dec.Target, Reason: dec.Reason})
		return false
	}
	r.Notify.Send(context.WithoutCancel(ctx), notify.Event{Kind: notify.Problem, Level: "error", Service: dec.Service, Time: r.Now().UTC(), RunID: runID,
		To: dec.Current, Reason: dec.Reason + "; " + dec.Fix})
	return true
}

// notify sends the event of a service's outcome: after the health check
// passed, after a failure with how the rollback went, or when the rollout
// was superseded or left unverified. Nothing is sent for services with
// nothing to do (problems are alert's).
func (r *Runner) notify(ctx context.Context, runID string, sr ServiceResult, err error) {
	by := ""
	if p := r.promoteFor(config.Service{Name: sr.Service}); p != nil {
		by = p.By
	}
	e, ok := eventOf(sr, err, by)
	if !ok {
		return
	}
	e.Time, e.RunID = r.Now().UTC(), runID
	// A notification must not outlive an interrupted run by much, but an
	// interrupted context must not silence a failure either.
	r.Notify.Send(context.WithoutCancel(ctx), e)
}

// eventOf is the event of a service's outcome (false: nothing to tell);
// by is who asked for the promotion (autodeploy promote), if anyone. A
// rollout that ends in its soak (sr.Soak) is told as the soak's end: a
// pass, or a failure with how the rollback went.
func eventOf(sr ServiceResult, err error, by string) (notify.Event, bool) {
	e := notify.Event{Service: sr.Service, To: sr.Target, Duration: sr.Duration}
	switch sr.Outcome {
	case OutcomeSoaked:
		e.Kind, e.Level = notify.SoakPassed, "info"
	case OutcomeDeployed, OutcomeVerified:
		e.Kind, e.Level = notify.Deployed, "info"
		if sr.Soak == SoakPassed {
			// This run deployed it and saw its soak through: the deploy
			// was told at its verification.
			e.Kind = notify.SoakPassed
			break
		}
		if sr.Action == Deploy {
			e.From = sr.Current
		}
		if sr.PromotedFrom != "" && sr.Action == Deploy {
			// Whence, and for `autodeploy promote`, who and why.
			e.Kind, e.Source, e.Reason, e.By = notify.Promoted, sr.PromotedFrom, sr.Reason, by
		}
	case OutcomeSuperseded:
		e.Kind, e.Level, e.From, e.Reason = notify.Superseded, "warning", sr.Current, sr.Error
		// Who changed the Deployment, and to what: the image they set,
		// not autodeploy's target.
		var sup *rollout.SupersededError
		if errors.As(err, &sup) {
			e.By = sup.By
			if sup.Image != "" {
				e.To = sup.Image
			}
		}
	case OutcomeUnverified:
		e.Kind, e.Level, e.Reason = notify.Unverified, "warning", sr.Error
	case OutcomeRolledBack, OutcomeRollbackFailed, OutcomeFailed:
		e.Kind, e.Level, e.From, e.Reason = notify.Failed, "error", sr.Current, sr.Error
		if sr.Outcome != OutcomeFailed {
			ok := sr.Outcome == OutcomeRolledBack
			e.RolledBack = &ok
		}
		var fe *rollout.FailedError
		if errors.As(err, &fe) && fe.Problem != nil {
			e.Pod, e.PodReason = fe.Problem.Pod, fe.Problem.Reason
		}
		if sr.Soak == SoakFailed {
			// The kind says it: "api: sha-2 failed its soak: the health
			// check failed ...", not "...: soak failed: the health check
			// failed ..." (the soak's health check error begins so).
			e.Kind, e.Reason = notify.SoakFailed, strings.TrimPrefix(e.Reason, "soak failed: ")
		}
	default:
		return e, false
	}
	return e, true
}

// progress calls Progress one call at a time: follow-ups beside a wait
// (alongside) report progress too.
func (r *Runner) progress(svc, msg string) {
	if r.Progress != nil {
		r.progressMu.Lock()
		defer r.progressMu.Unlock()
		r.Progress(svc, msg)
	}
}

// reconcile asks Flux to rescan the repositories behind the configured
// policies (and, on Flux >= 2.7, the policies themselves) and waits for
// the answers. Problems are warnings: the run goes on with the status Flux
// has, and a registry outage is retried by the next run.
func (r *Runner) reconcile(ctx context.Context, api flux.API, policies map[string]*flux.Policy) []string {
	var pols []flux.Ref
	var sorted []flux.Policy
	for _, key := range slices.Sorted(maps.Keys(policies)) {
		p := policies[key]
		pols = append(pols, flux.Ref{Namespace: p.Namespace, Name: p.Name})
		sorted = append(sorted, *p)
	}
	repos := flux.RepositoriesOf(sorted)
	token := flux.Token(r.Now())
	rctx, done := r.startFluxWaits(ctx)
	defer done()
	start := r.Now()
	if len(repos) == 0 {
		return nil
	}
	r.progress("", "asking Flux to rescan "+ui.Count(len(repos), "image repository", "image repositories"))
	var warnings []string
	collect := func(kind string, outs []flux.Outcome) {
		for _, o := range outs {
			if o.OK {
				continue
			}
			w := fmt.Sprintf("%s %s: %s", kind, o.Ref, o.Problem)
			warnings = append(warnings, w)
			r.Log.Warn("reconcile", "kind", kind, "object", o.Ref.String(), "problem", o.Problem)
			r.progress("", "warning: "+w)
		}
	}
	repoOuts := flux.Reconcile(rctx, r.Dynamic, api.Repositories(), repos, token)
	collect("ImageRepository", repoOuts)
	// Repositories that had not answered when the command was stopped (a
	// signal, the run's deadline) say nothing of Flux: noted as silent,
	// every watch's stop logged "Flux has stopped answering" (issue 18,
	// fifth pass).
	if ctx.Err() == nil {
		warnings = append(warnings, r.noteSilent(repoOuts)...)
	}
	switch {
	case rctx.Err() != nil:
	case api.PolicyReconcile():
		collect("ImagePolicy", flux.Reconcile(rctx, r.Dynamic, api.Policies(), pols, token))
	default:
		// Flux < 2.7: wait (bounded) for the policies of the repositories
		// whose scan found something new to be re-evaluated.
		r.awaitPolicies(rctx, api, repoOuts, policies)
	}
	r.Log.Info("reconcile done", "repositories", len(repos), "warnings", len(warnings), "duration", r.Now().Sub(start))
	return warnings
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// elide shortens s to about n bytes by cutting its middle: the end of the
// cluster's words is where they say what went wrong (a kubelet's pull
// error quotes the reference three times before "401 Unauthorized").
func elide(s string, n int) string {
	if len(s) <= n {
		return s
	}
	head := n / 3
	return strings.ToValidUTF8(s[:head]+" ... "+s[len(s)-(n-head):], "")
}

// releaseExpiredHold removes a hold whose end has passed (Plan already
// plans as if it were gone), as resume would, conditionally on the
// Deployment read; a failure is logged, and the next run tries again.
func (r *Runner) releaseExpiredHold(ctx context.Context, s config.Service, log *slog.Logger) {
	m := &Manager{Kube: r.Kube, Dynamic: r.Dynamic, Log: r.Log, Now: r.Now, By: "autodeploy run", Notify: r.Notify}
	if _, err := m.ReleaseExpiredHold(ctx, s); err != nil {
		var rm *ReplicaSetMarksError
		if !errors.As(err, &rm) {
			log.Warn("could not remove the expired hold; the next run tries again", "error", err)
		}
	}
}
