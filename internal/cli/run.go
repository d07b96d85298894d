package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
	"github.com/autodeploy-dev/autodeploy/internal/ui"
)

// RunOptions are the inputs of `autodeploy run`.
type RunOptions struct {
	DryRun      bool
	NoReconcile bool
	// IgnoreWindows deploys outside the services' deploy windows.
	IgnoreWindows bool
	Output        string
	Services      []string

	f          *Factory
	serviceSet bool
	promote    *deploy.PromoteNow // autodeploy promote
}

// Complete takes the factory; run has no arguments.
func (o *RunOptions) Complete(f *Factory, cmd *cobra.Command, _ []string) error {
	o.f = f
	o.serviceSet = cmd.Flags().Changed("service")
	return nil
}

// Validate checks the flags before the config or the cluster is read.
func (o *RunOptions) Validate() error {
	if o.Output != "" && o.Output != "json" {
		return &flagError{fmt.Errorf("invalid --output %q: only json is supported", o.Output)}
	}
	if o.serviceSet && len(o.Services) == 0 {
		// --service "" (a blank shell variable) must not widen a run of one
		// service to all of them.
		return validServiceArg("")
	}
	for _, s := range o.Services {
		if err := validServiceArg(s); err != nil {
			return err
		}
	}
	return nil
}

const runLong = `Deploy the images Flux has detected, one service after another.

A run takes the lock (exit 4 if another run or a rollback holds it), asks Flux
to rescan the image repositories and waits for the answer (--no-reconcile
skips this), compares each service's container image with its ImagePolicy's
latest image (full references, never bare tags), and rolls out the
differences one at a time. Each service is read again right before its patch,
which fails rather than overwrite a change made since (a hold, kubectl, Flux).
It waits for its own revision as 'kubectl rollout status --revision' does,
fails fast on ImagePullBackOff or CrashLoopBackOff, runs the health check, and
on failure rolls back to the template that ran before: an image to blame is
remembered so later runs skip it; a registry outage is retried later.

A service with deployWindows in the config starts a rollout only when its
rolloutTimeout ends inside an open window; otherwise it is skipped (exit 0)
with the time the next window opens. Verifying an earlier rollout and rolling
back are never held back by a window; --ignore-windows deploys anyway, and the
log says so.

A service with soak in the config is watched after its verification, once
every service had its turn: a restart, a pod leaving Ready or a failing health
check in that time rolls it back as a failed rollout; a soak the run cannot
see through is carried on by the next run. A service with promote takes the
image its source runs, verified and soaked there (autodeploy promote: now).

Someone else's change during the rollout is left alone (superseded, exit 10);
a rollout that could not be judged (API down, budget spent, paused) is left
unverified for the next run (exit 7).

Under cron it prints nothing but one line on stderr when a person must look
(exit 5, 6, 7, 9) or when lines of the run could not be written to the log
(exit 11: a full or read-only disk); everything goes to the log file. A problem that lasts (a
missing Deployment or ImagePolicy, a failed image running, a deploy Flux
reverted) is on that line once, when it appears or changes, as it is
notified; the exit code stays 7 on every run while it lasts. On a terminal,
or with -v, it shows progress on stderr and a summary on stdout with every
problem, every run; so does -o json.`

const runExample = `  # the cron job
  */2 * * * * autodeploy run

  # what would be deployed now, without changing anything
  autodeploy run --dry-run

  # an emergency fix outside the deploy windows
  autodeploy run --service api-gateway --ignore-windows

  # one service, machine-readable summary
  autodeploy run --service api-gateway -o json`

func newCmdRun(f *Factory, runF func(context.Context, *RunOptions) error) *cobra.Command {
	o := &RunOptions{}
	cmd := &cobra.Command{
		Use:     "run",
		Short:   "Deploy the images Flux has detected, verify them, roll back on failure",
		Long:    runLong,
		Example: runExample,
		Args:    exactArgs(0, "no arguments"),
		RunE:    runE(f, o, runF),
	}
	fl := cmd.Flags()
	fl.BoolVar(&o.DryRun, "dry-run", o.DryRun, "print the plan and change nothing (no lock, no log, no reconcile request)")
	fl.BoolVar(&o.NoReconcile, "no-reconcile", o.NoReconcile, "do not ask Flux to rescan first; use the status it has")
	fl.BoolVar(&o.IgnoreWindows, "ignore-windows", o.IgnoreWindows, "deploy outside the services' deploy windows (an emergency; logged)")
	fl.StringVarP(&o.Output, "output", "o", o.Output, "print the summary as json")
	fl.StringSliceVar(&o.Services, "service", o.Services, "only these services (repeat or comma-separate)")
	names := serviceNames(f)
	_ = cmd.RegisterFlagCompletionFunc("service", func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		// The value is a comma-separated list: the shell matches the
		// candidates against all of toComplete, so each one carries the
		// names before the last comma, which are not offered again.
		given := o.Services
		i := strings.LastIndex(toComplete, ",")
		if i >= 0 {
			given = append(slices.Clip(given), strings.Split(toComplete[:i], ",")...)
		}
		cands, dir := names(given)
		for j := range cands {
			cands[j] = toComplete[:i+1] + cands[j]
		}
		return cands, dir
	})
	_ = cmd.RegisterFlagCompletionFunc("output", fixedValues("json"))
	return cmd
}

// Run does one run.
func (o *RunOptions) Run(ctx context.Context) (result error) {
	f := o.f
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	for _, name := range o.Services {
		if _, err := lookupService(cfg, name); err != nil {
			return err
		}
	}
	// promote is a person's command wherever it runs (ssh without a
	// terminal, a script): it says what it did every time. It printed
	// nothing without a terminal, a refused promotion included, as cron's
	// runs print a standing problem once (issue 18, seventh pass).
	talk := f.Options.Verbose || f.IO.ErrTTY || o.promote != nil
	if len(cfg.Services) == 0 {
		// The packaged config until someone fills it in: its cron line
		// runs every two minutes and must neither mail nor need a cluster.
		if talk {
			fmt.Fprintf(f.IO.ErrOut, "no services configured in %s: nothing to do\n", cfg.Path)
		}
		if o.Output == "json" {
			// Nothing on stdout was no JSON to a program asking for it
			// (issue 18, ninth pass): a summary of no services.
			now := time.Now()
			return writeJSON(f.IO.Out, &deploy.Result{RunID: runlog.NewRunID(now), Started: now, DryRun: o.DryRun, Services: []deploy.ServiceResult{}})
		}
		return nil
	}
	now := time.Now()
	runID := runlog.NewRunID(now)
	r := &deploy.Runner{Config: cfg, Now: time.Now, Log: runlog.Discard()}
	if talk {
		r.Progress = progressPrinter(f.IO.ErrOut)
	}
	if !o.DryRun {
		logOut := f.IO.Out
		if o.Output == "json" {
			// log.file "-" shares stdout: keep it for the JSON summary.
			logOut = f.IO.ErrOut
		}
		l, err := runlog.Open(ctx, cfg.Log, runID, logOut, "cmd", "run")
		if err != nil {
			return fmt.Errorf("refusing to deploy: %w", err)
		}
		defer func() {
			l.Close()
			// Last, so that every line of the run is counted.
			result = withLogLost(result, l.Lost(), "run", runID)
		}()
		r.Log = l.Logger
		r.Notify = notify.New(cfg.Notify, l.Logger)
	}
	clients, err := f.Clients()
	if err != nil {
		r.Log.Error("run failed", "error", err)
		return err
	}
	runCtx := ctx
	if !o.DryRun {
		h, err := takeLock(ctx, f, cfg, clients, "autodeploy run "+runID, 0, nil)
		var held *lock.HeldError
		if errors.As(err, &held) {
			r.Log.Info("run skipped", "reason", err.Error())
			if !talk && o.Output != "json" {
				// Overlapping runs are normal when a rollout outlasts the
				// cron period: the exit code says it, cron mail does not.
				// A program asking for -o json is told why it gets none
				// (it got an empty stdout and stderr; issue 18, ninth pass).
				return withCode(ExitLocked, &silentError{err})
			}
			return err
		}
		if err != nil {
			r.Log.Error("run failed", "error", err)
			return err
		}
		defer h.Release()
		// A lost lock (a Lease not renewed in time) stops the run as a
		// signal would: another host may be deploying.
		runCtx = h.Context()
	}
	if o.DryRun {
		// A dry run takes no lock; a run in progress may change the plan.
		if h, held, _ := locker(f, cfg, clients).Holder(ctx); held {
			fmt.Fprintf(f.IO.ErrOut, "note: a run is in progress (%s): what it is doing is not in this plan\n", h.Name())
		}
	}
	r.Kube, r.Dynamic = clients.Kube, clients.Dynamic
	res, err := r.Run(runCtx, runID, deploy.Options{DryRun: o.DryRun, NoReconcile: o.NoReconcile, Services: o.Services, IgnoreWindows: o.IgnoreWindows, Promote: o.promote})
	if cause := context.Cause(runCtx); errors.Is(cause, lock.ErrLost) {
		r.Log.Error("run stopped: the lock was lost", "error", cause)
		err = withCode(ExitLocked, fmt.Errorf("run %s stopped: %w; the next run verifies what was left", runID, cause))
		if res == nil || res.Services == nil {
			return err
		}
		if o.Output == "json" {
			_ = writeJSON(f.IO.Out, res)
		} else if talk {
			printSummary(f.IO.Out, res)
		}
		return err
	}
	var heard map[string]bool
	if !o.DryRun {
		recordMetrics(ctx, cfg.Metrics, res, err, r.Log)
		if res != nil {
			heard = heardBefore(alertedRecord(cfg.Log.File), res, configuredNames(cfg), r.Log)
		}
	}
	// An interrupted run logged its own end (deploy.Runner.stopped).
	if err != nil && res.Services == nil && !res.Cancelled {
		err = clients.Classify(err)
		r.Log.Error("run failed", "error", err)
		return err
	}
	switch {
	case o.Output == "json":
		if err := writeJSON(f.IO.Out, res); err != nil {
			return err
		}
	case talk || o.DryRun:
		printSummary(f.IO.Out, res)
	}
	if errors.Is(err, deploy.ErrDeadline) {
		return withCode(ExitInterrupted, fmt.Errorf("%w; released the lock: the next run verifies what was left", err))
	}
	if err != nil {
		return withCode(ExitInterrupted, fmt.Errorf("interrupted: stopped waiting and released the lock; the next run verifies what was left (%w)", err))
	}
	code := runExitCode(res)
	if o.promote != nil && code == ExitOK && notPromoted(res) {
		// What the person asked for did not happen (refused, held,
		// outside its window, nothing verified to promote): the summary
		// says why, the exit code that it needs them.
		code = ExitServiceProblem
	}
	switch {
	case code == ExitOK:
		return nil
	case !talk && !o.DryRun && cronMails[code]:
		// Under cron nothing else is printed, and cron mails only what a
		// job writes: one line says what needs a person, and a standing
		// problem only once (cronline.go).
		if line := failureLine(res, heard); line != "" {
			return withCode(code, fmt.Errorf("run %s: %s (log: %s)", runID, line, cfg.Log.File))
		}
	}
	return withCode(code, &silentError{fmt.Errorf("run %s: %s", runID, summaryLine(res))})
}

// recordMetrics writes the run's metrics where the config says. Failures
// are logged: metrics never fail a deployment.
func recordMetrics(ctx context.Context, m config.Metrics, res *deploy.Result, runErr error, log *slog.Logger) {
	if m.TextfileDir == "" && m.Pushgateway == "" && m.PushgatewayFile == "" {
		return
	}
	var prev map[string]*dto.MetricFamily
	if m.TextfileDir != "" {
		var err error
		if prev, err = metrics.ReadPrevious(filepath.Join(m.TextfileDir, metrics.FileName)); err != nil {
			log.Warn("previous metrics unreadable", "error", err)
		}
	}
	reg := metrics.Registry(res, runErr, prev, time.Now())
	if m.TextfileDir != "" {
		if err := metrics.WriteTextfile(m.TextfileDir, reg); err != nil {
			log.Warn("metrics not written", "dir", m.TextfileDir, "error", err)
		}
	}
	if m.Pushgateway != "" || m.PushgatewayFile != "" {
		if u, err := m.PushgatewayURL(config.ReadFile); err != nil {
			log.Warn("metrics not pushed", "error", err)
		} else if err := metrics.Push(ctx, u, reg); err != nil {
			log.Warn("metrics not pushed", "error", err)
		}
	}
}

// cronMails are the exit codes of `run` that print one line on stderr even
// without a terminal: those that need a person. A lock held by a long run
// (4) and a rollout superseded by someone (10) are not news to anyone.
var cronMails = map[ExitCode]bool{ExitDeployFailed: true, ExitRollbackFailed: true, ExitServiceProblem: true, ExitForbidden: true}

// failureLine names the services behind a failing exit code, with their
// errors, on one line; "" when there are none. The services in heard are
// left out: people heard of their standing problem already (heardBefore).
func failureLine(res *deploy.Result, heard map[string]bool) string {
	var parts []string
	for _, s := range res.Services {
		if c := serviceExitCode(s); cronMails[c] && !heard[s.Service] {
			why := s.Error
			if why == "" {
				why = s.Reason
			}
			if s.Fix != "" {
				why += " (fix: " + s.Fix + ")"
			}
			parts = append(parts, fmt.Sprintf("%s %s: %s", s.Service, s.Outcome, oneLine(why)))
		}
	}
	// Cron mails it; a person reads the mail in a terminal.
	return ui.Escape(strings.Join(parts, "; "))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// runExitCode ranks what went wrong: a failed rollback needs a person most.
func runExitCode(res *deploy.Result) ExitCode {
	code := ExitOK
	rank := map[ExitCode]int{ExitOK: 0, ExitSuperseded: 1, ExitServiceProblem: 2, ExitDeployFailed: 3, ExitForbidden: 4, ExitRollbackFailed: 5}
	for _, s := range res.Services {
		if c := serviceExitCode(s); rank[c] > rank[code] {
			code = c
		}
	}
	return code
}

// notPromoted reports whether autodeploy promote's service was skipped
// (a dry run's plan included): not promoted, and not already running it.
func notPromoted(res *deploy.Result) bool {
	for _, s := range res.Services {
		if s.Outcome == deploy.OutcomeSkipped || (s.Outcome == deploy.OutcomePlanned && s.Action == deploy.Skip) {
			return true
		}
	}
	return false
}

// serviceExitCode is what one service's outcome alone would exit with.
func serviceExitCode(s deploy.ServiceResult) ExitCode {
	c := ExitOK
	switch s.Outcome {
	case deploy.OutcomeRollbackFailed:
		c = ExitRollbackFailed
	case deploy.OutcomeFailed, deploy.OutcomeRolledBack:
		c = ExitDeployFailed
	case deploy.OutcomeNotRun, deploy.OutcomeUnverified:
		c = ExitServiceProblem
	case deploy.OutcomeSuperseded:
		c = ExitSuperseded
	case deploy.OutcomeSkipped, deploy.OutcomePlanned:
		if s.Problem {
			c = ExitServiceProblem
		}
	}
	if s.Forbidden && c != ExitOK && c != ExitRollbackFailed {
		c = ExitForbidden
	}
	return c
}

func summaryLine(res *deploy.Result) string {
	counts := map[deploy.Outcome]int{}
	var order []deploy.Outcome
	for _, s := range res.Services {
		if counts[s.Outcome] == 0 {
			order = append(order, s.Outcome)
		}
		counts[s.Outcome]++
	}
	parts := make([]string, 0, len(order))
	for _, o := range order {
		parts = append(parts, fmt.Sprintf("%d %s", counts[o], o))
	}
	return strings.Join(parts, ", ")
}

// progressPrinter writes progress lines; msg may quote pods' and events'
// messages (anyone's who may write them): escaped (ui.Escape).
func progressPrinter(w io.Writer) func(svc, msg string) {
	return func(svc, msg string) {
		msg = ui.Escape(msg)
		if svc == "" {
			fmt.Fprintf(w, "%s %s\n", ui.Cyan.Sprintf("►"), msg)
			return
		}
		fmt.Fprintf(w, "%s %s: %s\n", ui.Cyan.Sprintf("►"), svc, msg)
	}
}

var outcomeColor = map[deploy.Outcome]func(string, ...any) string{
	deploy.OutcomeDeployed: ui.Green.Sprintf, deploy.OutcomeVerified: ui.Green.Sprintf, deploy.OutcomeUpToDate: ui.Green.Sprintf,
	deploy.OutcomeSoaked: ui.Green.Sprintf, deploy.OutcomeSoaking: ui.Green.Sprintf,
	deploy.OutcomeSkipped: ui.Yellow.Sprintf, deploy.OutcomePlanned: ui.Cyan.Sprintf, deploy.OutcomeInterrupted: ui.Yellow.Sprintf,
	deploy.OutcomeRolledBack: ui.Red.Sprintf, deploy.OutcomeFailed: ui.Red.Sprintf, deploy.OutcomeRollbackFailed: ui.Red.Sprintf,
	deploy.OutcomeNotRun: ui.Red.Sprintf, deploy.OutcomeUnverified: ui.Yellow.Sprintf, deploy.OutcomeSuperseded: ui.Yellow.Sprintf,
}

// printSummary writes the run's table: one row per service, the images as
// "old -> new" with the repeated repository left out of the new one.
//
// The result's text (reasons quoting holds, errors quoting pods) is the
// cluster's: escaped first (ui.Escaped), as status does.
func printSummary(w io.Writer, res *deploy.Result) {
	res = ui.Escaped(res)
	rows := [][]string{{"SERVICE", "RESULT", "IMAGE", "TIME", "DETAIL"}}
	for _, s := range res.Services {
		result := string(s.Outcome)
		if s.Outcome == deploy.OutcomePlanned {
			result = string(s.Action)
		}
		if c := outcomeColor[s.Outcome]; c != nil {
			result = c("%s", result)
		}
		detail := s.Error
		if detail == "" && (s.Outcome == deploy.OutcomeSkipped || s.Outcome == deploy.OutcomePlanned) {
			detail = s.Reason
		}
		dur := ""
		if s.Duration > 0 {
			dur = s.Duration.Round(100 * time.Millisecond).String()
		}
		rows = append(rows, []string{s.Service, result, imageChange(s.Current, s.Target), dur, detail})
	}
	_ = ui.Table(w, "", rows)
	for _, warn := range res.Warnings {
		fmt.Fprintf(w, "%s %s\n", ui.Yellow.Sprintf("warning:"), warn)
	}
	if res.DryRun {
		fmt.Fprintln(w, "dry run: nothing was changed")
	}
}

// imageChange shows current -> target, digests included: a new build of a
// mutable tag (v2 -> v2@sha256:...) must not read as a no-op.
func imageChange(cur, target string) string {
	if target == "" || cur == target {
		return cur
	}
	rc, err1 := image.Parse(cur)
	rt, err2 := image.Parse(target)
	if err1 != nil || err2 != nil {
		return cur + " -> " + target
	}
	if image.Satisfies(rc, rt) {
		return cur
	}
	if rc.Name() != rt.Name() {
		return cur + " -> " + target
	}
	short := ""
	if rt.Tag != "" {
		short = ":" + rt.Tag
	}
	if rt.Digest != "" {
		short += "@" + rt.Digest
	}
	return cur + " -> " + short
}

// writeJSON prints v for -o json, as every command does: indented, one
// document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
