package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

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
	OutcomeNotRun         Outcome = "not-run" // the run's budget was spent before its turn
)

// ServiceResult is one service's line of the summary.
type ServiceResult struct {
	Decision
	Outcome Outcome `json:"outcome"`
	Error   string  `json:"error,omitempty"`
	// Forbidden: RBAC refused a request the deploy needed.
	Forbidden bool          `json:"forbidden,omitempty"`
	Duration  time.Duration `json:"durationNanos"`
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
	// Progress, when set, receives one human line per step (a TTY, -v).
	Progress func(service, msg string)
	// Health runs a health check; health.Check unless replaced.
	Health func(ctx context.Context, h config.Health, image, tag string) error
	// Notify tells people about deploys and failures; nil sends nothing.
	Notify *notify.Sender
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
	services := r.Config.Services
	if len(o.Services) > 0 {
		services = slices.DeleteFunc(slices.Clone(services), func(s config.Service) bool { return !slices.Contains(o.Services, s.Name) })
	}
	r.Log.Info("run started", "services", len(services), "dryRun", o.DryRun)

	api, err := flux.Detect(r.Kube.Discovery())
	if err != nil {
		return res, err
	}
	res.FluxAPI = api.Version
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
		dec := Plan(in)
		sr := ServiceResult{Decision: dec}
		log := r.Log.With("svc", dec.Service)
		log.Info("plan", "action", dec.Action, "current", dec.Current, "target", dec.Target, "reason", dec.Reason)
		switch {
		case ctx.Err() != nil:
			sr.Outcome = OutcomeInterrupted
		case o.DryRun:
			sr.Outcome = OutcomePlanned
		case dec.Action == UpToDate:
			sr.Outcome = OutcomeUpToDate
		case dec.Action == Skip:
			sr.Outcome = OutcomeSkipped
			if dec.Problem {
				log.Warn("skipped", "reason", dec.Reason)
			}
			r.progress(dec.Service, "skipped: "+dec.Reason)
		case runCtx.Err() != nil:
			sr.Outcome, sr.Error = OutcomeNotRun, fmt.Sprintf("the run's budget (runTimeout %s) was spent before this service's turn", r.Config.RunTimeout)
			log.Error("not run", "reason", sr.Error)
		default:
			start := r.Now()
			sr.Outcome, err = r.execute(ctx, runCtx, in, dec, log)
			sr.Duration = r.Now().Sub(start)
			if err != nil {
				sr.Error = err.Error()
				sr.Forbidden = apierrors.IsForbidden(err)
			}
			log.Info("service done", "outcome", sr.Outcome, "duration", sr.Duration)
			r.notify(ctx, runID, sr, err)
		}
		res.Services = append(res.Services, sr)
	}
	if ctx.Err() != nil {
		res.Cancelled = true
		r.Log.Warn("run interrupted: the lock is released; the next run verifies what was left unverified")
		return res, ctx.Err()
	}
	r.Log.Info("run finished", "duration", r.Now().Sub(res.Started))
	return res, nil
}

// notify sends the event of a service's outcome: after the health check
// passed, or after a failure with how the rollback went. Nothing is sent
// for services with nothing to do.
func (r *Runner) notify(ctx context.Context, runID string, sr ServiceResult, err error) {
	e := notify.Event{Service: sr.Service, Time: r.Now().UTC(), RunID: runID, To: sr.Target, Duration: sr.Duration}
	switch sr.Outcome {
	case OutcomeDeployed, OutcomeVerified:
		e.Kind, e.Level = notify.Deployed, "info"
		if sr.Action == Deploy {
			e.From = sr.Current
		}
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

func (r *Runner) progress(svc, msg string) {
	if r.Progress != nil {
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
	rctx, cancel := context.WithTimeout(ctx, r.Config.Flux.ReconcileTimeout)
	defer cancel()
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
	collect("ImageRepository", flux.Reconcile(rctx, r.Dynamic, api.Repositories(), repos, token))
	if api.PolicyReconcile() && rctx.Err() == nil {
		collect("ImagePolicy", flux.Reconcile(rctx, r.Dynamic, api.Policies(), pols, token))
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

// execute deploys or verifies one service, rolling back on failure.
func (r *Runner) execute(ctx, runCtx context.Context, in Input, dec Decision, log *slog.Logger) (Outcome, error) {
	d, s := in.Deployment, in.Service
	if dec.Action == Deploy {
		cause := fmt.Sprintf("autodeploy: %s -> %s (ImagePolicy %s)", dec.Current, dec.Target, dec.Policy)
		ann := map[string]string{
			AnnDeployedImage:              dec.Target,
			AnnVerified:                   "false",
			AnnPreviousRevision:           fmt.Sprint(dec.PreviousRevision),
			rollout.ChangeCauseAnnotation: cause,
		}
		log.Info("rollout started", "from", dec.Current, "to", dec.Target, "revision", dec.PreviousRevision)
		r.progress(s.Name, fmt.Sprintf("deploying %s -> %s", dec.Current, dec.Target))
		if _, err := rollout.SetImage(ctx, r.Kube, d, dec.Container, dec.Target, ann, false); err != nil {
			log.Error("patch failed: nothing changed", "error", err)
			return OutcomeFailed, err
		}
	} else {
		log.Info("verifying an earlier rollout", "image", dec.Current)
		r.progress(s.Name, "verifying "+dec.Current+" (left unverified by an earlier run)")
	}

	err := r.waitAndCheck(runCtx, s, dec, log)
	if ctx.Err() != nil {
		log.Warn("interrupted while waiting: left unverified for the next run", "image", dec.Target)
		return OutcomeInterrupted, ctx.Err()
	}
	if err == nil {
		if err := r.markVerified(ctx, s); err != nil {
			log.Warn("could not mark as verified; the next run verifies again", "error", err)
		}
		if dec.Action == Verify {
			return OutcomeVerified, nil
		}
		return OutcomeDeployed, nil
	}
	log.Error("rollout failed", "image", dec.Target, "error", err)
	r.progress(s.Name, "failed: "+err.Error())
	return r.recover(ctx, s, dec, err, log)
}

func (r *Runner) markVerified(ctx context.Context, s config.Service) error {
	d := r.fresh(ctx, s)
	if d == nil {
		return fmt.Errorf("deployment %s/%s can no longer be read", s.Namespace, s.Deployment)
	}
	_, err := rollout.Annotate(ctx, r.Kube, d, map[string]string{AnnVerified: "true"})
	return err
}

// waitAndCheck waits for the rollout with the service's timeout (within the
// run's budget), then runs its health check.
func (r *Runner) waitAndCheck(runCtx context.Context, s config.Service, dec Decision, log *slog.Logger) error {
	start := r.Now()
	wctx, cancel := context.WithTimeout(runCtx, s.RolloutTimeout)
	defer cancel()
	last := ""
	d, err := rollout.Wait(wctx, r.Kube, s.Namespace, s.Deployment, func(msg string) {
		last = msg
		log.Debug("rollout", "status", msg)
		r.progress(s.Name, msg)
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			if runCtx.Err() != nil {
				return fmt.Errorf("the run's budget (runTimeout %s) ran out during the rollout; last status: %s", r.Config.RunTimeout, last)
			}
			return fmt.Errorf("rollout did not finish within %s; last status: %s", s.RolloutTimeout, last)
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
		log.Error("health check failed", "url", s.Health.URL, "error", err)
		return err
	}
	log.Info("health check passed", "url", s.Health.URL, "duration", r.Now().Sub(hstart))
	r.progress(s.Name, "health check passed")
	return nil
}

// recover handles a failed rollout: remember the image, and roll back to
// the revision that ran before (unless auto-rollback is off).
func (r *Runner) recover(ctx context.Context, s config.Service, dec Decision, cause error, log *slog.Logger) (Outcome, error) {
	mark := map[string]string{
		AnnFailedImage:   mustJSON(FailedImage{Image: dec.Target, Reason: cause.Error(), At: r.Now().UTC()}),
		AnnVerified:      "",
		AnnDeployedImage: "",
	}
	d := r.fresh(ctx, s)
	if d == nil {
		return OutcomeRollbackFailed, fmt.Errorf("%v; and the Deployment can no longer be read", cause)
	}
	if !s.AutoRollback {
		if _, err := rollout.Annotate(ctx, r.Kube, d, mark); err != nil {
			log.Error("could not remember the failed image", "error", err)
		}
		log.Warn("auto-rollback is off: the failed rollout is left as it is", "image", dec.Target)
		return OutcomeFailed, cause
	}
	mark[rollout.ChangeCauseAnnotation] = fmt.Sprintf("autodeploy: rolled back from %s: %s", dec.Target, truncate(cause.Error(), 200))
	log.Info("rollback started", "from", dec.Target, "toRevision", dec.PreviousRevision)
	r.progress(s.Name, "rolling back")
	// The rollback gets its own timeout even when the run's budget is spent:
	// leaving a broken rollout in place is worse than overrunning.
	rctx, cancel := context.WithTimeout(ctx, s.RolloutTimeout)
	defer cancel()
	res, err := rollout.Undo(rctx, r.Kube, d, rollout.UndoOptions{ToRevision: dec.PreviousRevision, Annotations: mark})
	if err == nil {
		_, err = rollout.Wait(rctx, r.Kube, s.Namespace, s.Deployment, func(msg string) { r.progress(s.Name, msg) })
	}
	if ctx.Err() != nil {
		return OutcomeInterrupted, ctx.Err()
	}
	if err != nil {
		log.Error("rollback failed: someone must look", "error", err)
		return OutcomeRollbackFailed, fmt.Errorf("%w; rollback failed: %v", cause, err)
	}
	log.Info("rollback complete", "revision", res.ToRevision)
	r.progress(s.Name, fmt.Sprintf("rolled back to revision %d", res.ToRevision))
	return OutcomeRolledBack, cause
}

// fresh re-reads a Deployment before a patch that must not act on a stale
// copy; nil when it cannot be read.
func (r *Runner) fresh(ctx context.Context, s config.Service) *appsv1.Deployment {
	d, err := r.Kube.AppsV1().Deployments(s.Namespace).Get(ctx, s.Deployment, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return d
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
