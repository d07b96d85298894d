package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
	"github.com/autodeploy-dev/autodeploy/internal/ui"
)

// RollbackOptions are the inputs of `autodeploy rollback`.
type RollbackOptions struct {
	Service     string
	ToRevision  int64
	DryRun      bool
	SuspendFlux bool
	Reason      string
	LockTimeout time.Duration

	f         *Factory
	reasonSet bool
}

const rollbackLong = `Roll a service back to its previous revision, as 'kubectl rollout undo' does,
and hold it so that the next runs do not deploy it again.

The target is the previous revision among the ReplicaSets the Deployment
controls (kubectl's choice: the second-highest revision), or --to-revision N.
The whole pod template of that revision is restored (every container, env and
volume, not only the image). A paused Deployment is refused; a template that
already matches is left alone. Without --to-revision, a target that would put
a known bad image back is refused: the image remembered as failed, or the one
the current revision itself rolled back from (right after 'kubectl rollout
undo').

The rollback takes the same lock as 'run' (waiting up to --lock-timeout for a
run in progress), waits for the rollout with the same rules, and runs the
service's health check. Afterwards the service is held and the image rolled
back from is remembered as failed, until 'autodeploy resume <service>'.

If a Flux Kustomization applies the Deployment from git, the rollback sticks
without freezing anything else: the Deployment gets kustomize-controller's
per-object annotation kustomize.toolkit.fluxcd.io/reconcile: disabled while
it is held, and the tag rolled back from is added to the exclusionList of the
policy's ImageRepository, so that the policy, then the ImageUpdateAutomation's
commit, then Flux's apply go back with it. 'resume' removes the annotation;
the exclusion goes once the policy ranks a newer image above it (or with
'resume --forget-failed'). autodeploy records what it changed in annotations
and removes nothing it did not add.`

// Complete fills what the arguments give.
func (o *RollbackOptions) Complete(f *Factory, cmd *cobra.Command, args []string) error {
	o.f, o.Service = f, args[0]
	o.reasonSet = cmd.Flags().Changed("reason")
	return nil
}

// Validate checks the inputs before anything is read or changed.
func (o *RollbackOptions) Validate() error {
	if err := validServiceArg(o.Service); err != nil {
		return err
	}
	if o.ToRevision < 0 {
		return &flagError{fmt.Errorf("--to-revision must be a positive revision number, got %d", o.ToRevision)}
	}
	if o.LockTimeout < 0 {
		return &flagError{fmt.Errorf("--lock-timeout must not be negative, got %s", o.LockTimeout)}
	}
	if o.reasonSet && strings.TrimSpace(o.Reason) == "" {
		return &flagError{fmt.Errorf("--reason must not be blank: leave it out for %q", "manual rollback")}
	}
	if config.HasControl(o.Reason) {
		// It goes into the change-cause, which kubectl rollout history
		// prints as it is (issue 18, ninth pass).
		return &flagError{fmt.Errorf("--reason must not hold a line break or another control character (kubectl shows it raw in the change-cause), got %s", strconv.Quote(o.Reason))}
	}
	return nil
}

func newCmdRollback(f *Factory, runF func(context.Context, *RollbackOptions) error) *cobra.Command {
	o := &RollbackOptions{LockTimeout: 5 * time.Minute}
	cmd := &cobra.Command{
		Use:   "rollback <service>",
		Short: "Roll a service back to its previous revision and hold it",
		Long:  rollbackLong,
		Example: `  autodeploy rollback api-gateway --reason "500s on /search"
  autodeploy rollback api-gateway --to-revision 4 --dry-run`,
		Args:              exactArgs(1, "exactly one service name"),
		ValidArgsFunction: serviceCompletion(f),
		RunE:              runE(f, o, runF),
	}
	fl := cmd.Flags()
	fl.Int64Var(&o.ToRevision, "to-revision", o.ToRevision, "revision to restore (default: the previous one)")
	fl.BoolVar(&o.DryRun, "dry-run", o.DryRun, "show what would be restored, change nothing (server-side dry run)")
	// --suspend-flux froze the whole Kustomization (every service, the
	// namespace) and lost the rollback on resume; the per-object levers
	// replace it. Accepted, so that scripts keep working, and ignored.
	fl.BoolVar(&o.SuspendFlux, "suspend-flux", o.SuspendFlux, "no longer used")
	_ = fl.MarkDeprecated("suspend-flux", "rollbacks of Deployments applied by Flux stick on their own now (see autodeploy rollback --help); nothing is suspended")
	fl.StringVar(&o.Reason, "reason", o.Reason, "why, for the log and the hold")
	fl.DurationVar(&o.LockTimeout, "lock-timeout", o.LockTimeout, "how long to wait for a run in progress")
	return cmd
}

// session is what rollback, hold and resume share: the config's service,
// the clients, the log and who is acting.
type session struct {
	m       *deploy.Manager
	s       config.Service
	cfg     *config.Config
	clients *kube.Clients
	log     *runlog.Log
	command string
	runID   string
	// logged says that the failure close would log is in the log already
	// (hold --all logs each service's as it goes).
	logged bool
}

// failed logs the failure of the command on the current service: without
// it a rollback refused its lock or a hold refused its read left only "log
// opened", a command that never ended (issue 18, fourth pass).
func (s *session) failed(err error) {
	s.m.Log.Error(s.command+" failed", "svc", s.s.Name, "error", err)
}

func openSession(ctx context.Context, f *Factory, name, command string) (*session, error) {
	cfg, err := f.Config()
	if err != nil {
		return nil, err
	}
	s, err := lookupService(cfg, name)
	if err != nil {
		return nil, err
	}
	return newSession(ctx, f, cfg, s, command)
}

// newSession is openSession for a service already looked up (forget acts on
// names no longer configured too).
func newSession(ctx context.Context, f *Factory, cfg *config.Config, s config.Service, command string) (*session, error) {
	runID := runlog.NewRunID(time.Now())
	l, err := runlog.Open(ctx, cfg.Log, runID, f.IO.Out, "cmd", command)
	if err != nil {
		return nil, fmt.Errorf("refusing to %s: %w", command, err)
	}
	clients, err := f.Clients()
	if err != nil {
		l.Error(command+" failed", "cmd", command, "svc", s.Name, "error", err)
		l.Close()
		return nil, err
	}
	log := l.With("cmd", command)
	m := &deploy.Manager{Kube: clients.Kube, Dynamic: clients.Dynamic, Log: log, Now: time.Now, By: actor(f.Getenv), Notify: notify.New(cfg.Notify, log)}
	return &session{m: m, s: s, cfg: cfg, clients: clients, log: l, command: command, runID: runID}, nil
}

// close closes the log and adds to *err that lines of it were lost, as a
// run does (exit 11, or the command's own code when it needs a person):
// a hold or rollback whose log filled up after "log opened" exited 0 in
// silence, its "held"/"rolled back" line (who, why) missing.
func (s *session) close(err *error) {
	if *err != nil && !s.logged {
		s.failed(*err)
	}
	s.log.Close()
	*err = withLogLost(*err, s.log.Lost(), s.command, s.runID)
}

// classify maps an error of the Manager onto the exit-code table: a missing
// Deployment is 7, an unreachable cluster or refused credentials 3 (one
// line naming the server and kubeconfig), an RBAC refusal 9.
func (s *session) classify(err error) error {
	var (
		nf *deploy.ErrNotFound
		pe *deploy.ProblemError
	)
	if errors.As(err, &nf) || errors.As(err, &pe) {
		return withCode(ExitServiceProblem, err)
	}
	return s.clients.Classify(err)
}

// actor is user@host of whoever runs the command; through sudo, the user
// who ran sudo.
func actor(getenv func(string) string) string {
	name := getenv("SUDO_USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

// Run carries the rollback out.
func (o *RollbackOptions) Run(ctx context.Context) (err error) {
	f := o.f
	sess, err := openSession(ctx, f, o.Service, "rollback")
	if err != nil {
		return err
	}
	defer sess.close(&err)
	m, s := sess.m, sess.s
	progress := progressPrinter(f.IO.ErrOut)
	m.Progress = func(msg string) { progress("", msg) }
	if !o.DryRun {
		held, err := takeLock(ctx, f, sess.cfg, sess.clients, "autodeploy rollback "+o.Service+" by "+m.By, o.LockTimeout, lockWaiting(f, o.LockTimeout))
		if err != nil {
			return err
		}
		defer held.Release()
		ctx = held.Context()
	}
	res, err := m.Rollback(ctx, s, deploy.RollbackOptions{ToRevision: o.ToRevision, DryRun: o.DryRun, Reason: o.Reason})
	if err = warnOnly(f, err); err != nil {
		var rf *deploy.RollbackFailedError
		if errors.As(err, &rf) {
			return withCode(ExitRollbackFailed, err)
		}
		return sess.classify(err) // paused, no history, refused target: exit 1 with the reason
	}
	// Images, names and errors come from the cluster: escaped, as status
	// escapes them (issue 18, item 9).
	res = ui.Escaped(res)
	out := f.IO.Out
	switch {
	case res.Skipped:
		fmt.Fprintf(out, "%s: skipped rollback (current template already matches revision %d)\n", s.Name, res.ToRevision)
		return nil
	case res.DryRun:
		fmt.Fprintf(out, "%s: would roll back from %s (revision %d) to %s (revision %d) (dry run)\n", s.Name, res.From, res.FromRevision, res.To, res.ToRevision)
		if res.Kustomization != "" {
			fmt.Fprintf(out, "  and, as Flux Kustomization %s applies it, would keep Flux off it while held and exclude the tag of %s in its ImageRepository\n", res.Kustomization, res.From)
		}
	default:
		fmt.Fprintf(out, "%s %s rolled back from %s to %s (revision %d)\n", ui.Green.Sprintf("✔"), s.Name, res.From, res.To, res.ToRevision)
		if res.ImageKept {
			fmt.Fprintf(out, "  held: runs skip %s until 'autodeploy resume %s'; the image did not change, so it is not remembered as failed\n", s.Name, s.Name)
		} else {
			fmt.Fprintf(out, "  held: runs skip %s until 'autodeploy resume %s'; %s is remembered as failed\n", s.Name, s.Name, res.From)
		}
		if res.ReconcileDisabled {
			fmt.Fprintf(out, "  Flux Kustomization %s skips this Deployment while it is held (%s: %s; resume removes it)\n", res.Kustomization, flux.KustomizeReconcileAnnotation, flux.ReconcileDisabled)
		}
		if res.Excluded != "" {
			fmt.Fprintf(out, "  tag of %s excluded in ImageRepository %s: the policy and git go back too\n", res.From, res.Excluded)
		}
		if res.PointedBack != "" {
			fmt.Fprintf(out, "  ImagePolicy %s (the promotion's, autodeploy's) points at %s again: git goes back too\n", res.PointedBack, res.To)
		}
		if res.GitWarning != "" {
			fmt.Fprintf(f.IO.ErrOut, "%s git does not follow the rollback yet: %s\n", ui.Yellow.Sprintf("warning:"), res.GitWarning)
		}
		if res.ExcludeError != "" {
			fmt.Fprintf(f.IO.ErrOut, "%s could not exclude the tag of %s (%s): once resumed, Flux applies it again from git unless git changes; exclude it by hand in the ImageRepository's spec.exclusionList\n", ui.Yellow.Sprintf("warning:"), res.From, res.ExcludeError)
		}
	}
	return nil
}

// lockWaiting says, once, that a command waits up to timeout for the run
// holding the lock.
func lockWaiting(f *Factory, timeout time.Duration) func(lock.Holder) {
	return func(h lock.Holder) {
		fmt.Fprintf(f.IO.ErrOut, "waiting up to %s for the run in progress (%s) to finish...\n", timeout, ui.Escape(h.Name()))
	}
}

// serviceCompletion completes configured service names, for the one
// argument of rollback, hold, resume and history.
func serviceCompletion(f *Factory) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	names := serviceNames(f)
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names(args)
	}
}

// serviceNames completes the configured service names not given yet (status
// takes several; run's --service a list).
func serviceNames(f *Factory) func(given []string) ([]string, cobra.ShellCompDirective) {
	return func(given []string) ([]string, cobra.ShellCompDirective) {
		cfg, err := f.Config()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var names []string
		for _, s := range cfg.Services {
			if !slices.Contains(given, s.Name) {
				names = append(names, s.Name)
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// fixedValues completes a flag with a fixed set of values.
func fixedValues(values ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp)
}
