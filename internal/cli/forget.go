package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/ui"
)

// ForgetOptions are the inputs of `autodeploy forget`.
type ForgetOptions struct {
	Service     string
	DryRun      bool
	LockTimeout time.Duration

	f *Factory
}

const forgetLong = `Remove every record autodeploy keeps for a service name, as if it had never
deployed it: the hold, the failed-image and retry marks, the alerted, verified,
deployed-image and previous-revision marks on its Deployment and on all its
ReplicaSets (where a kubectl rollout undo would bring them back), the
kustomize.toolkit.fluxcd.io/reconcile: disabled annotation a rollback set
(with its record autodeploy.dev/reconcile-disabled), the Flux Kustomization
a rollback --suspend-flux of autodeploy 1.x suspended (resumed), and every
exclusion recorded for the name in the ImageRepository of each configured
ImagePolicy.

The name need not be configured: a service since renamed or removed from the
config left its exclusions behind, and they are found by name (its Deployment
is not known then, and only exclusions are looked for). Nothing autodeploy
did not record goes: a reconcile: disabled annotation without autodeploy's
record is someone else's, and is named with the command that removes it.

forget takes the same lock as 'run' (waiting up to --lock-timeout for a run
in progress), so it never races a run or a rollback; --dry-run lists what
would go and changes nothing.`

// Complete fills what the arguments give.
func (o *ForgetOptions) Complete(f *Factory, cmd *cobra.Command, args []string) error {
	o.f, o.Service = f, args[0]
	return nil
}

// Validate checks the inputs before anything is read or changed.
func (o *ForgetOptions) Validate() error {
	if err := validServiceArg(o.Service); err != nil {
		return err
	}
	// Not looked up in the config: a name forgotten is often no longer
	// there. One it could never hold was never a service, and would be
	// searched for and printed as given (a terminal escape with it).
	if err := config.CheckServiceName(o.Service); err != nil {
		return &flagError{err}
	}
	if o.LockTimeout < 0 {
		return &flagError{fmt.Errorf("--lock-timeout must not be negative, got %s", o.LockTimeout)}
	}
	return nil
}

func newCmdForget(f *Factory, runF func(context.Context, *ForgetOptions) error) *cobra.Command {
	o := &ForgetOptions{LockTimeout: 5 * time.Minute}
	cmd := &cobra.Command{
		Use:   "forget <service>",
		Short: "Remove every record autodeploy keeps for a service (marks, levers on Flux, exclusions)",
		Long:  forgetLong,
		Example: `  autodeploy forget api-gateway --dry-run
  autodeploy forget old-api   # exclusions left by a service since renamed`,
		Args:              exactArgs(1, "exactly one service name"),
		ValidArgsFunction: serviceCompletion(f),
		RunE:              runE(f, o, runF),
	}
	fl := cmd.Flags()
	fl.BoolVar(&o.DryRun, "dry-run", o.DryRun, "list what would be removed, change nothing")
	fl.DurationVar(&o.LockTimeout, "lock-timeout", o.LockTimeout, "how long to wait for a run in progress")
	return cmd
}

// Run removes the records.
func (o *ForgetOptions) Run(ctx context.Context) (err error) {
	f := o.f
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	s, configured := cfg.Service(o.Service)
	if !configured {
		s = config.Service{Name: o.Service}
	}
	sess, err := newSession(ctx, f, cfg, s, "forget")
	if err != nil {
		return err
	}
	defer sess.close(&err)
	if !o.DryRun {
		held, err := takeLock(ctx, f, cfg, sess.clients, "autodeploy forget "+o.Service+" by "+sess.m.By, o.LockTimeout, lockWaiting(f, o.LockTimeout))
		if err != nil {
			return err
		}
		defer held.Release()
		ctx = held.Context()
	}
	res, err := sess.m.Forget(ctx, cfg, o.Service, o.DryRun)
	// What was removed is said even when a later step failed: it is gone.
	out, errOut := f.IO.Out, f.IO.ErrOut
	suffix := ""
	if o.DryRun {
		suffix = " (dry run)"
	}
	for _, r := range res.Removed {
		// Names, patterns and keys come from the cluster: escaped.
		fmt.Fprintf(out, "%s -n %s: %s removed%s\n", ui.Escape(r.Object), ui.Escape(r.Namespace), ui.Escape(r.What), suffix)
	}
	if err != nil {
		return sess.clients.Classify(err)
	}
	if !res.Configured {
		if len(res.Searched) == 0 {
			_, err := lookupService(cfg, o.Service)
			return fmt.Errorf("%w, and no ImageRepository could be searched for exclusions recorded under that name", err)
		}
		fmt.Fprintf(errOut, "note: %s is not a configured service: only the exclusions recorded under that name were looked for (in ImageRepository %s)\n", o.Service, strings.Join(res.Searched, ", "))
	}
	if res.DeploymentMissing != "" {
		fmt.Fprintf(errOut, "note: Deployment %s of %s not found: only exclusions were looked for\n", res.DeploymentMissing, o.Service)
	}
	for _, n := range res.NotSearched {
		fmt.Fprintf(errOut, "warning: not searched for exclusions: %s\n", ui.Escape(n))
	}
	if res.KustomizationGone != "" {
		fmt.Fprintf(errOut, "warning: Flux Kustomization %s, suspended by a rollback, no longer exists: nothing to resume\n", ui.Escape(res.KustomizationGone))
	}
	if res.ForeignReconcile != "" {
		fmt.Fprintf(errOut, "warning: the Deployment has %s: %s, not set by autodeploy (no record): Flux never applies it; left as it is (%s removes it)\n", flux.KustomizeReconcileAnnotation, flux.ReconcileDisabled, res.ForeignReconcile)
	}
	if len(res.Removed) == 0 {
		fmt.Fprintf(out, "nothing recorded for %s\n", o.Service)
	}
	return nil
}
