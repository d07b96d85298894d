package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/fatih/color"
	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
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
}

const rollbackLong = `Roll a service back to its previous revision, as 'kubectl rollout undo' does,
and hold it so that the next runs do not deploy it again.

The target is the previous revision among the ReplicaSets the Deployment
controls, or --to-revision N. The whole pod template of that revision is
restored (every container, env and volume, not only the image). A paused
Deployment is refused; a template that already matches is left alone.

The rollback takes the same lock as 'run' (waiting up to --lock-timeout for a
run in progress), waits for the rollout with the same rules, and runs the
service's health check. Afterwards the service is held and the image rolled
back from is remembered as failed, until 'autodeploy resume <service>'.

If a Flux Kustomization manages the Deployment, its next reconcile puts the
image from git back: --suspend-flux suspends that Kustomization too, and
'resume' resumes it.`

func newCmdRollback(f *Factory) *cobra.Command {
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
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Service = args[0]
			if o.ToRevision < 0 {
				return &flagError{fmt.Errorf("--to-revision must be a positive revision number, got %d", o.ToRevision)}
			}
			return runRollback(cmd.Context(), f, o)
		},
	}
	fl := cmd.Flags()
	fl.Int64Var(&o.ToRevision, "to-revision", o.ToRevision, "revision to restore (default: the previous one)")
	fl.BoolVar(&o.DryRun, "dry-run", o.DryRun, "show what would be restored, change nothing (server-side dry run)")
	fl.BoolVar(&o.SuspendFlux, "suspend-flux", o.SuspendFlux, "also suspend the Flux Kustomization that manages the Deployment")
	fl.StringVar(&o.Reason, "reason", o.Reason, "why, for the log and the hold")
	fl.DurationVar(&o.LockTimeout, "lock-timeout", o.LockTimeout, "how long to wait for a run in progress")
	return cmd
}

// manager builds what rollback, hold and resume share: the config's
// service, the clients, the log and who is acting.
func manager(f *Factory, name, command string) (*deploy.Manager, config.Service, *config.Config, func(), error) {
	cfg, err := f.Config()
	if err != nil {
		return nil, config.Service{}, nil, nil, err
	}
	s, err := lookupService(cfg, name)
	if err != nil {
		return nil, s, nil, nil, err
	}
	l, err := runlog.Open(cfg.Log, runlog.NewRunID(time.Now()), f.IO.Out)
	if err != nil {
		return nil, s, nil, nil, fmt.Errorf("refusing to %s: %w", command, err)
	}
	clients, err := f.Clients()
	if err != nil {
		l.Close()
		return nil, s, nil, nil, err
	}
	log := l.With("cmd", command)
	m := &deploy.Manager{Kube: clients.Kube, Dynamic: clients.Dynamic, Log: log, Now: time.Now, By: actor(f.Getenv), Notify: notify.New(cfg.Notify, log)}
	cleanup := func() { l.Close() }
	return m, s, cfg, cleanup, nil
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

func runRollback(ctx context.Context, f *Factory, o *RollbackOptions) error {
	m, s, cfg, cleanup, err := manager(f, o.Service, "rollback")
	if err != nil {
		return err
	}
	clients, err := f.Clients()
	if err != nil {
		return err
	}
	defer cleanup()
	progress := progressPrinter(f.IO.ErrOut)
	m.Progress = func(msg string) { progress("", msg) }
	if !o.DryRun {
		release, err := takeLock(ctx, f, cfg, clients, "autodeploy rollback "+o.Service+" by "+m.By, o.LockTimeout, func(h lock.Holder) {
			who := h.Command
			if h.Pid != 0 {
				who = fmt.Sprintf("pid %d", h.Pid)
			}
			fmt.Fprintf(f.IO.ErrOut, "waiting up to %s for the run in progress (%s, since %s) to finish...\n", o.LockTimeout, who, h.Since.Local().Format("15:04:05"))
		})
		if err != nil {
			return err
		}
		defer release()
	}
	res, err := m.Rollback(ctx, s, deploy.RollbackOptions{ToRevision: o.ToRevision, DryRun: o.DryRun, SuspendFlux: o.SuspendFlux, Reason: o.Reason})
	if err != nil {
		var nf *deploy.ErrNotFound
		var rf *deploy.RollbackFailedError
		switch {
		case errors.As(err, &rf):
			return withCode(ExitRollbackFailed, err)
		case errors.As(err, &nf):
			return withCode(ExitServiceProblem, err)
		}
		return err // paused, no history: exit 1 with kubectl's message
	}
	out := f.IO.Out
	switch {
	case res.Skipped:
		fmt.Fprintf(out, "%s: skipped rollback (current template already matches revision %d)\n", s.Name, res.ToRevision)
		return nil
	case res.DryRun:
		fmt.Fprintf(out, "%s: would roll back from %s (revision %d) to %s (revision %d) (dry run)\n", s.Name, res.From, res.FromRevision, res.To, res.ToRevision)
	default:
		fmt.Fprintf(out, "%s %s rolled back from %s to %s (revision %d)\n", color.GreenString("✔"), s.Name, res.From, res.To, res.ToRevision)
		fmt.Fprintf(out, "  held: runs skip %s until 'autodeploy resume %s'; %s is remembered as failed\n", s.Name, s.Name, res.From)
	}
	if res.Kustomization != "" {
		switch {
		case res.Suspended:
			fmt.Fprintf(out, "  Flux Kustomization %s suspended; 'autodeploy resume %s' resumes it\n", res.Kustomization, s.Name)
		case !res.DryRun:
			fmt.Fprintf(out, "%s Flux Kustomization %s manages this Deployment: its next reconcile puts the image from git back. Fix git, or run again with --suspend-flux.\n", color.YellowString("warning:"), res.Kustomization)
		}
	}
	return nil
}

// serviceCompletion completes configured service names.
func serviceCompletion(f *Factory) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cfg, err := f.Config()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		names := make([]string, len(cfg.Services))
		for i, s := range cfg.Services {
			names[i] = s.Name
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}
