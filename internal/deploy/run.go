package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/health"
	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// Outcome is how a service's part of a run ended.
type Outcome string

const (
	OutcomeUpToDate       Outcome = "up-to-date"
	OutcomeSkipped        Outcome = "skipped"
	OutcomePlanned        Outcome = "planned" // --dry-run
	OutcomeDeployed       Outcome = "deployed"
	OutcomeVerified       Outcome = "verified"
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
	// NewProblem: the Alert is news this run (it appeared or changed, and
	// was notified), or it could not be recorded on the Deployment; false
	// for a problem people already heard of (alert), and where there is no
	// Deployment to record it on (the caller's business).
	NewProblem bool `json:"newProblem,omitempty"`
}

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

	mu         sync.Mutex
	warnings   []string   // besides the rescan's (bringGitAlong)
	progressMu sync.Mutex // serialises Progress (see progress)

	fluxw fluxWaits // this run's waits on Flux (fluxwait.go)
}

var defaultHealth = health.Check

// Options of one run.
type Options struct {
	DryRun      bool
	NoReconcile bool
	// Services limits the run to these names (all when empty).
	Services []string
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
	res := &Result{RunID: runID, Started: r.Now(), DryRun: o.DryRun}
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

	api, err := flux.Detect(ctx, r.Kube.Discovery())
	if err != nil {
		return res, err
	}
	res.FluxAPI, r.api = api.Version, api
	policies, err := r.listPolicies(ctx, api, services)
	if err != nil {
		return res, err
	}
	if !o.NoReconcile && !o.DryRun {
		res.Warnings = r.reconcile(ctx, api, configured(policies, services))
		if ctx.Err() != nil {
			res.Cancelled = true
			return res, ctx.Err()
		}
		// Read again: the rescan is the reason the run waited.
		if policies, err = r.listPolicies(ctx, api, services); err != nil {
			return res, err
		}
	}
	inputs, err := r.read(ctx, services, policies)
	if err != nil {
		return res, err
	}

	runCtx, cancel := context.WithTimeout(ctx, r.Config.RunTimeout)
	defer cancel()
	for _, in := range inputs {
		in.Now = r.Now()
		dec := Plan(in)
		sr := ServiceResult{Decision: dec}
		log := r.Log.With("svc", dec.Service)
		if !o.DryRun && ctx.Err() == nil && in.Deployment != nil {
			r.releaseLevers(ctx, in, log)
		}
		act := !o.DryRun && ctx.Err() == nil && (dec.Action == Deploy || dec.Action == Verify || dec.StaleMarks)
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
			sr.Decision, sr.Outcome, err = r.act(ctx, runCtx, dec, in.Service, api, log)
			sr.Duration = r.Now().Sub(start)
			if err != nil {
				sr.Error = err.Error()
				sr.Forbidden = apierrors.IsForbidden(err)
			}
			if sr.Action == Deploy || sr.Action == Verify {
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
	r.mu.Lock()
	res.Warnings, r.warnings = append(res.Warnings, r.warnings...), nil
	r.mu.Unlock()
	if ctx.Err() != nil {
		res.Cancelled = true
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			r.Log.Error("run stopped at its deadline: the lock is released; the next run verifies what was left unverified", "deadline", r.Config.RunDeadline())
			return res, fmt.Errorf("%w: the run reached its deadline (%s)", ErrDeadline, r.Config.RunDeadline())
		}
		r.Log.Warn("run interrupted: the lock is released; the next run verifies what was left unverified")
		return res, ctx.Err()
	}
	r.Log.Info("run finished", "duration", r.Now().Sub(res.Started))
	return res, nil
}

// PolicyEvaluationBound is the longest a run waits, on Flux < 2.7, for the
// policies of a repository whose rescan found new tags to be re-evaluated
// (see flux.AwaitPolicies); within flux.reconcileTimeout.
const PolicyEvaluationBound = 5 * time.Second

// ErrDeadline: the run was stopped at config.RunDeadline.
var ErrDeadline = errors.New("stopped")

// maxReplans bounds how often a service is read and planned again because
// its Deployment changed between the read and the patch.
const maxReplans = 5

// act reads the service's objects again right before acting on them (the
// snapshot decision only says there may be something to do), plans from
// that present state (a hold placed or an image set since the run's
// snapshot counts), and carries the plan out. A patch refused because the
// Deployment changed since the read is not a failure: read again, plan
// again.
func (r *Runner) act(ctx, runCtx context.Context, snapshot Decision, s config.Service, api flux.API, log *slog.Logger) (Decision, Outcome, error) {
	for attempt := 1; ; attempt++ {
		in, err := r.readService(ctx, api, s)
		if err != nil {
			log.Error("read failed: nothing changed", "error", err)
			return snapshot, OutcomeNotRun, err
		}
		dec := preflight(Plan(in), s)
		log.Info("plan", "action", dec.Action, "current", dec.Current, "target", dec.Target, "reason", dec.Reason)
		if dec.StaleMarks {
			// Flux put git's image over an interrupted rollout: the
			// deployed-image mark stays, as after a superseded one (Plan
			// reports the revert).
			err := r.clearMarks(ctx, in.Deployment, rollout.ImageOwner(in.Deployment, dec.Container) == flux.KustomizeManager)
			if apierrors.IsConflict(err) && attempt < maxReplans {
				continue
			}
			if err != nil {
				log.Warn("could not clear a stale unverified mark", "error", err)
			} else {
				log.Info("cleared an unverified mark for an image the Deployment no longer runs", "image", in.Deployment.Annotations[AnnDeployedImage])
				if attempt < maxReplans {
					continue // the Deployment read is stale now
				}
			}
		}
		switch {
		case dec.Action == UpToDate:
			return dec, OutcomeUpToDate, nil
		case dec.Action == Skip:
			return dec, r.skipped(dec, log), nil
		case runCtx.Err() != nil:
			err := fmt.Errorf("the run's budget (runTimeout %s) was spent before this service's turn", r.Config.RunTimeout)
			log.Error("not run", "reason", err)
			return dec, OutcomeNotRun, err
		}
		out, err := r.execute(ctx, runCtx, in, dec, log)
		if errors.Is(err, errChanged) && attempt < maxReplans {
			log.Info("the Deployment changed since it was read: planning again")
			continue
		}
		return dec, out, err
	}
}

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
		return dec.Alert != ""
	}
	if dec.Alert == "" {
		return false
	}
	r.Notify.Send(context.WithoutCancel(ctx), notify.Event{Kind: notify.Problem, Level: "error", Service: dec.Service, Time: r.Now().UTC(), RunID: runID,
		To: dec.Current, Reason: dec.Reason + "; " + dec.Fix})
	return true
}

// skipped reports a skip: a problem (exit 7) is logged as a warning, the
// log line status reads back as a failing run.
func (r *Runner) skipped(dec Decision, log *slog.Logger) Outcome {
	if dec.Problem {
		log.Warn("skipped", "reason", dec.Reason)
	}
	r.progress(dec.Service, "skipped: "+dec.Reason)
	return OutcomeSkipped
}

// errChanged: a conditional patch found the Deployment changed since it
// was read.
var errChanged = errors.New("the Deployment changed since it was read")

// readService reads what Plan needs for one service: its Deployment, the
// ReplicaSets it owns, and its ImagePolicy (3 requests).
func (r *Runner) readService(ctx context.Context, api flux.API, s config.Service) (Input, error) {
	in := Input{Service: s, Now: r.Now()}
	d, err := r.get(ctx, s)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return in, fmt.Errorf("read Deployment %s/%s: %w", s.Namespace, s.Deployment, err)
	default:
		in.Deployment = d
		if in.ReplicaSets, err = rollout.ListOwned(ctx, r.Kube, d); err != nil {
			return in, fmt.Errorf("list ReplicaSets of %s/%s: %w", s.Namespace, s.Deployment, err)
		}
	}
	u, err := r.Dynamic.Resource(api.Policies()).Namespace(s.PolicyNamespace).Get(ctx, s.PolicyName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return in, fmt.Errorf("read ImagePolicy %s/%s: %w", s.PolicyNamespace, s.PolicyName, err)
	default:
		p := flux.ParsePolicy(u)
		in.Policy = &p
	}
	return in, nil
}

// notify sends the event of a service's outcome: after the health check
// passed, after a failure with how the rollback went, or when the rollout
// was superseded or left unverified. Nothing is sent for services with
// nothing to do (problems are alert's).
func (r *Runner) notify(ctx context.Context, runID string, sr ServiceResult, err error) {
	e := notify.Event{Service: sr.Service, Time: r.Now().UTC(), RunID: runID, To: sr.Target, Duration: sr.Duration}
	switch sr.Outcome {
	case OutcomeDeployed, OutcomeVerified:
		e.Kind, e.Level = notify.Deployed, "info"
		if sr.Action == Deploy {
			e.From = sr.Current
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
	default:
		return
	}
	// A notification must not outlive an interrupted run by much, but an
	// interrupted context must not silence a failure either.
	r.Notify.Send(context.WithoutCancel(ctx), e)
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

// listPolicies lists the ImagePolicies with one LIST per namespace.
func (r *Runner) listPolicies(ctx context.Context, api flux.API, services []config.Service) (map[string]*flux.Policy, error) {
	out := map[string]*flux.Policy{}
	for _, ns := range config.PolicyNamespaces(services) {
		list, err := r.Dynamic.Resource(api.Policies()).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list ImagePolicies in %s: %w", ns, err)
		}
		for i := range list.Items {
			p := flux.ParsePolicy(&list.Items[i])
			out[p.Key()] = &p
		}
	}
	return out, nil
}

// reconcile asks Flux to rescan the repositories behind the configured
// policies (and, on Flux >= 2.7, the policies themselves) and waits for
// the answers. Problems are warnings: the run goes on with the status Flux
// has, and a registry outage is retried by the next run.
func (r *Runner) reconcile(ctx context.Context, api flux.API, policies map[string]*flux.Policy) []string {
	var repos, pols []flux.Ref
	for _, key := range slices.Sorted(maps.Keys(policies)) {
		p := policies[key]
		pols = append(pols, flux.Ref{Namespace: p.Namespace, Name: p.Name})
		ref := flux.Ref{Namespace: p.RepoNamespace, Name: p.RepoName}
		if p.RepoName != "" && !slices.Contains(repos, ref) {
			repos = append(repos, ref)
		}
	}
	token := flux.Token(r.Now())
	rctx, done := r.startFluxWaits(ctx)
	defer done()
	start := r.Now()
	if len(repos) == 0 {
		return nil
	}
	r.progress("", fmt.Sprintf("asking Flux to rescan %d image repositories", len(repos)))
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
	warnings = append(warnings, r.noteSilent(repoOuts)...)
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

// read lists Deployments and ReplicaSets with one LIST per namespace each,
// however many services live there.
func (r *Runner) read(ctx context.Context, services []config.Service, policies map[string]*flux.Policy) ([]Input, error) {
	deps := map[string]*appsv1.Deployment{}
	rss := map[string][]appsv1.ReplicaSet{}
	for _, ns := range config.DeploymentNamespaces(services) {
		dl, err := r.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list Deployments in %s: %w", ns, err)
		}
		for i := range dl.Items {
			deps[ns+"/"+dl.Items[i].Name] = &dl.Items[i]
		}
		rl, err := r.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list ReplicaSets in %s: %w", ns, err)
		}
		rss[ns] = rl.Items
	}
	inputs := make([]Input, 0, len(services))
	for _, s := range services {
		in := Input{Service: s, Deployment: deps[s.Namespace+"/"+s.Deployment], Policy: policies[s.PolicyNamespace+"/"+s.PolicyName]}
		if in.Deployment != nil {
			in.ReplicaSets = rollout.Owned(in.Deployment, rss[s.Namespace])
		}
		inputs = append(inputs, in)
	}
	return inputs, nil
}

// execute deploys or verifies one service, rolling back on failure. It
// judges only its own revision: the template its patch produced (or, for a
// verify, the one it finds). If someone changes the template meanwhile,
// the service ends superseded, and their change is left alone.
func (r *Runner) execute(ctx, runCtx context.Context, in Input, dec Decision, log *slog.Logger) (Outcome, error) {
	d, s := in.Deployment, in.Service
	// before is the template live just before the patch: where a failed
	// deploy goes back to. A verify only knows the revision.
	var (
		before *corev1.PodTemplateSpec
		git    *alongside // bringing git along, under GitOps
	)
	if dec.Action == Deploy {
		cause := deployCause(dec)
		ann := map[string]string{
			AnnDeployedImage:              dec.Target,
			AnnVerified:                   "false",
			AnnPreviousRevision:           fmt.Sprint(dec.PreviousRevision),
			rollout.ChangeCauseAnnotation: cause,
		}
		log.Info("rollout started", "from", dec.Current, "to", dec.Target, "revision", dec.PreviousRevision)
		r.progress(s.Name, fmt.Sprintf("deploying %s -> %s", dec.Current, dec.Target))
		patched, err := rollout.SetImage(ctx, r.Kube, d, dec.Container, dec.Target, ann, false)
		if apierrors.IsConflict(err) {
			return OutcomeNotRun, fmt.Errorf("%w: %v", errChanged, err)
		}
		if err != nil && rollout.Transient(err) {
			// A timeout or a connection cut after the request was sent: the
			// server may have applied it. The marks travel with the patch,
			// so the next run finds either nothing changed or an unverified
			// rollout, and verifies it.
			log.Error("patch outcome unknown: the next run reads the Deployment and verifies what it finds", "error", err)
			return OutcomeUnverified, fmt.Errorf("the patch's outcome is unknown (%w): the next run verifies what the Deployment runs", err)
		}
		if err != nil {
			log.Error("patch refused: nothing changed", "error", err)
			return OutcomeFailed, err
		}
		before, d = d.Spec.Template.DeepCopy(), patched
		if dec.Kustomization != "" {
			// Git follows alongside the rollout: bringGitAlong. A verified
			// rollout lets it finish (the automation may commit after a
			// rollout that completed at once); any other end stops it: a
			// rollback brings git back instead.
			git = startAlongside(ctx, func(ctx context.Context) { r.bringGitAlong(ctx, in, dec, log) })
		}
	} else {
		log.Info("verifying an earlier rollout", "image", dec.Current)
		r.progress(s.Name, "verifying "+dec.Current+" (left unverified by an earlier run)")
	}
	ours := d.Spec.Template.DeepCopy()

	err := r.waitAndCheck(runCtx, s, dec, ours, log)
	var (
		sup   *rollout.SupersededError
		unobs *rollout.UnobservedError
	)
	if err == nil {
		git.Wait() // bounded by gitops.FollowBound
	} else {
		git.Stop()
	}
	switch {
	case ctx.Err() != nil:
		log.Warn("interrupted while waiting: left unverified for the next run", "image", dec.Target)
		return OutcomeInterrupted, ctx.Err()
	case err == nil:
		if err := r.markVerified(ctx, s, ours); err != nil {
			log.Warn("could not mark as verified; the next run verifies again", "error", err)
		}
		r.releaseExclusions(ctx, in, dec, log)
		if dec.Action == Verify {
			return OutcomeVerified, nil
		}
		return OutcomeDeployed, nil
	case errors.As(err, &sup):
		return r.superseded(ctx, s, dec, sup, log)
	case errors.Is(err, rollout.ErrDeleted):
		// Someone deleted the Deployment: no verdict on the image, nothing
		// to roll back (it was "rollback failed", exit 6). A missing
		// Deployment is a problem of the service (exit 7).
		log.Warn("the Deployment was deleted during the rollout: nothing to verify or roll back", "image", dec.Target)
		r.progress(s.Name, err.Error())
		return OutcomeNotRun, err
	case errors.Is(err, rollout.ErrPausedWait):
		// Paused by a person during the rollout: their decision, not a
		// verdict on the image. The rollout stays unverified; once resumed,
		// the next run verifies it (until then runs skip the paused
		// Deployment).
		err = fmt.Errorf("%w during the rollout: left unverified (kubectl rollout resume deployment/%s -n %s, then the next run verifies it)", err, s.Deployment, s.Namespace)
		log.Warn("paused during the rollout: left unverified", "image", dec.Target, "error", err)
		r.progress(s.Name, err.Error())
		return OutcomeUnverified, err
	case errors.As(err, &unobs), apierrors.IsForbidden(err), errors.Is(err, errBudget):
		// Nothing was learnt about the image: no verdict, no rollback. The
		// unverified mark makes the next run verify it first.
		log.Warn("left unverified for the next run", "image", dec.Target, "error", err)
		r.progress(s.Name, "left unverified: "+err.Error())
		return OutcomeUnverified, err
	}
	log.Error("rollout failed", "image", dec.Target, "error", err)
	r.progress(s.Name, "failed: "+err.Error())
	return r.recover(ctx, s, dec, before, ours, err, log)
}

// errBudget: the run's budget ran out during a rollout that had not failed.
var errBudget = errors.New("the run's budget ran out")

// superseded ends a service whose Deployment someone else changed during
// autodeploy's rollout: their change stands, autodeploy's marks go (they
// describe a rollout that is no longer the Deployment's), nothing is
// remembered as failed.
func (r *Runner) superseded(ctx context.Context, s config.Service, dec Decision, sup *rollout.SupersededError, log *slog.Logger) (Outcome, error) {
	log.Warn("superseded: the Deployment was changed during the rollout; leaving it alone", "image", dec.Target, "by", sup.By, "now", sup.Image)
	r.progress(s.Name, sup.Error())
	// When Flux applied git over the rollout, the deployed-image mark
	// stays: it is how the next run knows its image was reverted, and does
	// not deploy it again (Plan).
	keepDeployed := sup.By == flux.KustomizeManager
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := r.get(ctx, s)
		if err != nil {
			return err
		}
		mark := rolloutMarks(keepDeployed)
		if c := d.Annotations[rollout.ChangeCauseAnnotation]; isDeployCause(c, dec.Target) {
			// The cause of autodeploy's patch would be copied onto their
			// revision's ReplicaSet, and `history` would show it for
			// their change (issue 18, item 10). The deployment controller
			// copies the new value onto the ReplicaSet too.
			mark[rollout.ChangeCauseAnnotation] = supersededCause(sup, dec.Target)
		}
		if _, err := rollout.AnnotateIfUnchanged(ctx, r.Kube, d, mark); err != nil {
			return err
		}
		// Their ReplicaSet was created from the Deployment with
		// autodeploy's marks on it; the controller never removes a
		// copied annotation, and an undo to their revision would bring
		// the marks back.
		owned, err := rollout.ListOwned(ctx, r.Kube, d)
		if err != nil {
			return err
		}
		if cur := rollout.Current(d, owned); cur != nil {
			return rollout.AnnotateReplicaSets(ctx, r.Kube, d, mark, cur.Name)
		}
		return nil
	})
	if err != nil {
		log.Warn("could not clear autodeploy's marks", "error", err)
	}
	return OutcomeSuperseded, sup
}

// clearMarks removes the marks of an autodeploy rollout from d.
func (r *Runner) clearMarks(ctx context.Context, d *appsv1.Deployment, keepDeployed bool) error {
	_, err := rollout.AnnotateIfUnchanged(ctx, r.Kube, d, rolloutMarks(keepDeployed))
	return err
}

// rolloutMarks is the patch that removes the marks of an autodeploy
// rollout; keepDeployed keeps the deployed-image mark (after Flux applied
// git over it: Plan reads it to report the revert).
func rolloutMarks(keepDeployed bool) map[string]string {
	mark := map[string]string{AnnVerified: "", AnnDeployedImage: "", AnnPreviousRevision: ""}
	if keepDeployed {
		delete(mark, AnnDeployedImage)
	}
	return mark
}

// deployCause is the change-cause of autodeploy's deploy patch.
func deployCause(dec Decision) string {
	return fmt.Sprintf("autodeploy: %s -> %s (ImagePolicy %s)", dec.Current, dec.Target, dec.Policy)
}

// isDeployCause: c is the change-cause of an autodeploy deploy of target
// (this run's or, for a verify, an earlier one's).
func isDeployCause(c, target string) bool {
	return strings.HasPrefix(c, "autodeploy: ") && strings.Contains(c, "-> "+target+" ")
}

// supersededCause is the change-cause of a revision someone else made
// during autodeploy's rollout of target.
func supersededCause(sup *rollout.SupersededError, target string) string {
	by, img := sup.By, sup.Image
	if by == "" {
		by = "someone else"
	}
	if img == "" {
		img = "a new template"
	}
	return fmt.Sprintf("%s set %s (superseding autodeploy's rollout of %s)", by, img, target)
}

// markVerified sets verified=true, only while the Deployment still has the
// template that was verified, and forgets a pending retry of the image.
func (r *Runner) markVerified(ctx context.Context, s config.Service, ours *corev1.PodTemplateSpec) error {
	for attempt := 1; ; attempt++ {
		d, err := r.getRetried(ctx, s)
		if err != nil {
			return err
		}
		if !rollout.EqualIgnoreHash(&d.Spec.Template, ours) {
			return fmt.Errorf("the Deployment changed after the rollout was verified")
		}
		_, err = rollout.AnnotateIfUnchanged(ctx, r.Kube, d, map[string]string{AnnVerified: "true", AnnPreviousRevision: "", AnnRetry: ""})
		if apierrors.IsConflict(err) && attempt < maxReplans {
			continue
		}
		return err
	}
}

// waitAndCheck waits for the rollout of ours with the service's timeout
// (within the run's budget), then runs its health check.
func (r *Runner) waitAndCheck(runCtx context.Context, s config.Service, dec Decision, ours *corev1.PodTemplateSpec, log *slog.Logger) error {
	start := r.Now()
	wctx, cancel := context.WithTimeout(runCtx, s.RolloutTimeout)
	defer cancel()
	last := ""
	d, err := rollout.Wait(wctx, r.Kube, s.Namespace, s.Deployment, rollout.WaitOptions{
		Template: ours, Container: dec.Container, Grace: r.Grace,
		Progress: func(msg string) {
			last = msg
			log.Debug("rollout", "status", msg)
			r.progress(s.Name, msg)
		},
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			if runCtx.Err() != nil {
				return fmt.Errorf("%w (runTimeout %s) before the rollout finished; last status: %s", errBudget, r.Config.RunTimeout, last)
			}
			// The error is Wait's verdict on what the pods showed.
			return fmt.Errorf("rollout did not finish within %s; last status: %s; %w", s.RolloutTimeout, last, err)
		}
		return err
	}
	log.Info("rollout complete", "image", dec.Target, "replicas", d.Status.AvailableReplicas, "duration", r.Now().Sub(start))
	if s.Health == nil {
		return nil
	}
	ref, _ := image.Parse(dec.Target)
	hstart := r.Now()
	if err := r.Health(runCtx, *s.Health, dec.Target, ref.Tag); err != nil {
		if runCtx.Err() != nil {
			return fmt.Errorf("%w (runTimeout %s) during the health check: %v", errBudget, r.Config.RunTimeout, err)
		}
		log.Error("health check failed", "url", s.Health.ShownURL(), "error", err)
		return err
	}
	log.Info("health check passed", "url", s.Health.ShownURL(), "duration", r.Now().Sub(hstart))
	r.progress(s.Name, "health check passed")
	return nil
}

// recover handles a failed rollout: remember the image (as failed when the
// image is to blame, as to be retried when another cause is: verdictOf),
// then roll back to what ran before (unless auto-rollback is off). The marks are written whatever the rollback does, so that a
// rollback that cannot be applied is reported once, not every run.
func (r *Runner) recover(ctx context.Context, s config.Service, dec Decision, before, ours *corev1.PodTemplateSpec, cause error, log *slog.Logger) (Outcome, error) {
	blame, evidence := verdictOf(cause)
	var exclusion *alongside
	if blame.Remembered() && s.AutoRollback && dec.Kustomization != "" {
		// Git must stop asking for the image, whatever the rollback does:
		// the exclusion starts now, beside the rollback, so that the policy,
		// the automation and the source move back while it rolls out (a
		// Kustomization interval in between would apply the bad tag again).
		exclusion = startAlongside(ctx, func(ctx context.Context) { r.excludeFailed(ctx, s, dec, log) })
	}
	out, err := r.rollBack(ctx, s, dec, blame, evidence, before, ours, cause, log)
	exclusion.Wait()
	return out, err
}

// rollBack writes the verdict's marks and restores what ran before (see
// recover).
func (r *Runner) rollBack(ctx context.Context, s config.Service, dec Decision, blame rollout.Cause, evidence string, before, ours *corev1.PodTemplateSpec, cause error, log *slog.Logger) (Outcome, error) {
	// The rollback gets its own timeout even when the run's budget is spent:
	// leaving a broken rollout in place is worse than overrunning.
	rctx, cancel := context.WithTimeout(ctx, s.RolloutTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		d, err := r.getRetried(rctx, s)
		if err != nil {
			return OutcomeRollbackFailed, fmt.Errorf("%v; and the Deployment can no longer be read: %v", cause, err)
		}
		if !rollout.EqualIgnoreHash(&d.Spec.Template, ours) {
			// Changed by someone else between the verdict and now.
			img, _ := rollout.ContainerImage(&d.Spec.Template, dec.Container)
			return r.superseded(ctx, s, dec, &rollout.SupersededError{Deployment: s.Namespace + "/" + s.Deployment, By: rollout.TemplateWriter(d, dec.Container), Image: img}, log)
		}
		mark := map[string]string{AnnVerified: "", AnnDeployedImage: "", AnnPreviousRevision: ""}
		if blame.Remembered() {
			mark[AnnFailedImage] = mustJSON(FailedImage{Image: dec.Target, Reason: cause.Error(), At: r.Now().UTC()})
		} else {
			rt := NextRetry(d.Annotations, dec.Target, string(blame), cause.Error(), r.Now().UTC())
			rt.Evidence = truncate(evidence, 300)
			mark[AnnRetry] = mustJSON(rt)
			log.Warn("not the image's fault: it will be tried again", "image", dec.Target, "cause", blame, "evidence", rt.Evidence, "attempt", rt.Attempts, "after", rt.After)
		}
		if !s.AutoRollback || dec.NoRollback {
			_, err := rollout.AnnotateIfUnchanged(rctx, r.Kube, d, mark)
			if apierrors.IsConflict(err) && attempt < maxReplans {
				continue
			}
			if err != nil {
				log.Error("could not remember the failed image", "error", err)
			}
			if dec.NoRollback {
				log.Warn("not autodeploy's rollout: the failure is recorded, the rollout left as it is", "image", dec.Target)
				return OutcomeFailed, fmt.Errorf("%w (not autodeploy's rollout: left as it is)", cause)
			}
			log.Warn("auto-rollback is off: the failed rollout is left as it is", "image", dec.Target)
			return OutcomeFailed, cause
		}
		mark[rollout.ChangeCauseAnnotation] = fmt.Sprintf("autodeploy: rolled back from %s: %s", dec.Target, truncate(cause.Error(), 200))
		log.Info("rollback started", "from", dec.Target, "toRevision", dec.PreviousRevision)
		r.progress(s.Name, "rolling back")
		var restored *corev1.PodTemplateSpec
		if before != nil {
			var out *appsv1.Deployment
			if out, err = rollout.RestoreTemplate(rctx, r.Kube, d, before, mark); err == nil {
				restored = &out.Spec.Template
			}
		} else {
			var res rollout.UndoResult
			res, err = rollout.Undo(rctx, r.Kube, d, rollout.UndoOptions{ToRevision: dec.PreviousRevision, Annotations: mark, Precondition: true})
			if err == nil && res.Skipped {
				err = fmt.Errorf("revision %d already has this template", res.ToRevision)
			}
			if err == nil {
				t := res.Target.Spec.Template
				restored = &t
			}
		}
		if apierrors.IsConflict(err) && attempt < maxReplans {
			continue
		}
		if err != nil {
			return r.rollbackFailed(ctx, s, dec, blame, cause, err, mark, log)
		}
		_, err = rollout.Wait(rctx, r.Kube, s.Namespace, s.Deployment, rollout.WaitOptions{Template: restored, Container: dec.Container, Grace: r.Grace, Progress: func(msg string) { r.progress(s.Name, msg) }})
		var sup *rollout.SupersededError
		switch {
		case ctx.Err() != nil:
			return OutcomeInterrupted, ctx.Err()
		case errors.As(err, &sup):
			// Someone (a person, Flux applying git before it followed the
			// exclusion) changed the Deployment during the rollback: not a
			// rollback that failed. The verdict's marks stay.
			log.Warn("superseded during the rollback: leaving it alone", "image", dec.Target, "by", sup.By, "now", sup.Image)
			r.progress(s.Name, sup.Error())
			if sup.By == flux.KustomizeManager {
				return OutcomeSuperseded, fmt.Errorf("%w; rolled back, then Flux applied the image again from git before git followed the rollback (%w): runs report it until Flux applies the policy's image", cause, sup)
			}
			return OutcomeSuperseded, fmt.Errorf("%w; rolled back, then %w", cause, sup)
		case err != nil:
			log.Error("rollback did not complete: someone must look", "error", err)
			return OutcomeRollbackFailed, fmt.Errorf("%w; rollback failed: %v", cause, err)
		}
		log.Info("rollback complete", "revision", dec.PreviousRevision)
		r.progress(s.Name, "rolled back")
		if !blame.Remembered() {
			return OutcomeRolledBack, fmt.Errorf("%w (%s, not the image: it will be tried again)", cause, blame.Who())
		}
		return OutcomeRolledBack, cause
	}
}

// rollbackFailed records a rollback that could not be applied (no earlier
// revision, a paused Deployment...): the marks are written anyway, with the
// error, so later runs skip the image instead of failing the same way
// every two minutes, and status shows what to do. When another cause than
// the image is to blame (the registry, a missing Secret, the cluster), the
// image is not remembered as failed: the rollout stays unverified, and runs
// verify it again after the retry's backoff (the pods start once the cause
// has passed).
func (r *Runner) rollbackFailed(ctx context.Context, s config.Service, dec Decision, blame rollout.Cause, cause, err error, mark map[string]string, log *slog.Logger) (Outcome, error) {
	log.Error("rollback failed: someone must look", "error", err)
	if blame.Remembered() {
		fi := FailedImage{Image: dec.Target, Reason: cause.Error(), At: r.Now().UTC(), RollbackError: err.Error()}
		mark[AnnFailedImage] = mustJSON(fi)
		delete(mark, rollout.ChangeCauseAnnotation)
	} else {
		var rt Retry
		_ = json.Unmarshal([]byte(mark[AnnRetry]), &rt)
		rt.Reason += "; the rollback could not be applied: " + err.Error()
		mark = map[string]string{AnnRetry: mustJSON(rt)}
	}
	if d, gerr := r.get(ctx, s); gerr == nil {
		if _, aerr := rollout.Annotate(ctx, r.Kube, d, mark); aerr != nil {
			log.Error("could not remember the failed image", "error", aerr)
		}
	}
	return OutcomeRollbackFailed, fmt.Errorf("%w; rollback failed: %v", cause, err)
}

// get reads the service's Deployment.
func (r *Runner) get(ctx context.Context, s config.Service) (*appsv1.Deployment, error) {
	return r.Kube.AppsV1().Deployments(s.Namespace).Get(ctx, s.Deployment, metav1.GetOptions{})
}

// afterVerdict is the backoff of the reads that act on a verdict (the
// rollback's, the verified mark's): an API blip there (common on k3s's
// datastore, kine) must not turn a verdict into "rollback failed" with no
// mark. About 6 s in all, within the caller's context.
var afterVerdict = wait.Backoff{Steps: 5, Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1}

// getRetried is get, retried on errors that may pass (not a missing
// Deployment, a refusal or a bad request).
func (r *Runner) getRetried(ctx context.Context, s config.Service) (*appsv1.Deployment, error) {
	var d *appsv1.Deployment
	err := retry.OnError(afterVerdict, func(err error) bool { return ctx.Err() == nil && rollout.Transient(err) }, func() error {
		var err error
		d, err = r.get(ctx, s)
		return err
	})
	return d, err
}

// configured keeps the policies the services use: a namespace shared with
// other teams' policies must not make every run wait on theirs.
func configured(policies map[string]*flux.Policy, services []config.Service) map[string]*flux.Policy {
	out := map[string]*flux.Policy{}
	for _, s := range services {
		if p, ok := policies[s.PolicyNamespace+"/"+s.PolicyName]; ok {
			out[p.Key()] = p
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
