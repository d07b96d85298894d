package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strings"
	"time"

	"github.com/fatih/color"
	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
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

If a Flux Kustomization manages the Deployment, its next reconcile puts the
image from git back: --suspend-flux suspends that Kustomization too, and
'resume' resumes it.`

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
	return nil
}

func newCmdRollback(f *Factory, runF func(context.Context, *RollbackOptions) error) *cobra.Command {
	o := &RollbackOptions{LockTimeout: 5 * time.Minute}
	cmd := &cobra.Command{
		Use:   "rollback <service>",
		Short: "Roll a service back to its previous revision and hold it",
		Long:  rollbackLong,
		Example: `  autodeploy rollback api-gateway --reason "500s on /search"
  autodeploy rollback api-gateway --to-revision 4 --dry-run
  autodeploy rollback api-gateway --suspend-flux`,
		Args:              exactArgs(1, "exactly one service name"),
		ValidArgsFunction: serviceCompletion(f),
		RunE:              runE(f, o, runF),
	}
	fl := cmd.Flags()
	fl.Int64Var(&o.ToRevision, "to-revision", o.ToRevision, "revision to restore (default: the previous one)")
	fl.BoolVar(&o.DryRun, "dry-run", o.DryRun, "show what would be restored, change nothing (server-side dry run)")
	fl.BoolVar(&o.SuspendFlux, "suspend-flux", o.SuspendFlux, "also suspend the Flux Kustomization that manages the Deployment")
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
}

func openSession(f *Factory, name, command string) (*session, error) {
	cfg, err := f.Config()
	if err != nil {
		return nil, err
	}
	s, err := lookupService(cfg, name)
	if err != nil {
		return nil, err
	}
	l, err := runlog.Open(cfg.Log, runlog.NewRunID(time.Now()), f.IO.Out, "cmd", command)
	if err != nil {
		return nil, fmt.Errorf("refusing to %s: %w", command, err)
	}
	clients, err := f.Clients()
	if err != nil {
		l.Close()
		return nil, err
	}
	log := l.With("cmd", command)
	m := &deploy.Manager{Kube: clients.Kube, Dynamic: clients.Dynamic, Log: log, Now: time.Now, By: actor(f.Getenv), Notify: notify.New(cfg.Notify, log)}
	return &session{m: m, s: s, cfg: cfg, clients: clients, log: l}, nil
}

func (s *session) close() { s.log.Close() }

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
func (o *RollbackOptions) Run(ctx context.Context) error {
	f := o.f
	sess, err := openSession(f, o.Service, "rollback")
	if err != nil {
		return err
	}
	defer sess.close()
	m, s := sess.m, sess.s
	progress := progressPrinter(f.IO.ErrOut)
	m.Progress = func(msg string) { progress("", msg) }
	if !o.DryRun {
		held, err := takeLock(ctx, f, sess.cfg, sess.clients, "autodeploy rollback "+o.Service+" by "+m.By, o.LockTimeout, func(h lock.Holder) {
			who := h.Command
			if h.Pid != 0 {
				who = fmt.Sprintf("pid %d", h.Pid)
			}
			fmt.Fprintf(f.IO.ErrOut, "waiting up to %s for the run in progress (%s, since %s) to finish...\n", o.LockTimeout, who, h.Since.Local().Format("15:04:05"))
		})
		if err != nil {
			return err
		}
		defer held.Release()
		ctx = held.Context()
	}
	res, err := m.Rollback(ctx, s, deploy.RollbackOptions{ToRevision: o.ToRevision, DryRun: o.DryRun, SuspendFlux: o.SuspendFlux, Reason: o.Reason})
	if err = warnOnly(f, err); err != nil {
		var rf *deploy.RollbackFailedError
		if errors.As(err, &rf) {
			return withCode(ExitRollbackFailed, err)
		}
		return sess.classify(err) // paused, no history, refused target: exit 1 with the reason
	}
	out := f.IO.Out
	switch {
	case res.Skipped:
		fmt.Fprintf(out, "%s: skipped rollback (current template already matches revision %d)\n", s.Name, res.ToRevision)
		return nil
	case res.DryRun:
		fmt.Fprintf(out, "%s: would roll back from %s (revision %d) to %s (revision %d) (dry run)\n", s.Name, res.From, res.FromRevision, res.To, res.ToRevision)
		if o.SuspendFlux && res.Kustomization != "" && !res.AlreadySuspended {
			fmt.Fprintf(out, "  and would suspend Flux Kustomization %s\n", res.Kustomization)
		}
	default:
		fmt.Fprintf(out, "%s %s rolled back from %s to %s (revision %d)\n", color.GreenString("✔"), s.Name, res.From, res.To, res.ToRevision)
		fmt.Fprintf(out, "  held: runs skip %s until 'autodeploy resume %s'; %s is remembered as failed\n", s.Name, s.Name, res.From)
	}
	if o.SuspendFlux && res.Kustomization == "" {
		fmt.Fprintf(f.IO.ErrOut, "warning: --suspend-flux: Deployment %s/%s has no %s label: no Flux Kustomization was suspended\n", s.Namespace, s.Deployment, deploy.KustomizationNameLabel)
	}
	if res.Kustomization != "" {
		switch {
		case res.AlreadySuspended:
			fmt.Fprintf(out, "  Flux Kustomization %s was already suspended by someone else: 'autodeploy resume %s' leaves it so\n", res.Kustomization, s.Name)
		case res.Suspended:
			fmt.Fprintf(out, "  Flux Kustomization %s suspended; 'autodeploy resume %s' resumes it\n", res.Kustomization, s.Name)
		case !res.DryRun:
			ns, name, _ := strings.Cut(res.Kustomization, "/")
			fmt.Fprintf(out, "%s Flux Kustomization %s manages this Deployment: its next reconcile puts the image from git back. Fix git, or suspend it now: flux suspend kustomization %s -n %s (and flux resume once git is fixed).\n", color.YellowString("warning:"), res.Kustomization, name, ns)
		}
	}
	return nil
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
