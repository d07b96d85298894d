package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/ui"
)

// HoldOptions are the inputs of `autodeploy hold`.
type HoldOptions struct {
	Service string
	Reason  string

	f *Factory
}

// Complete fills what the arguments give.
func (o *HoldOptions) Complete(f *Factory, cmd *cobra.Command, args []string) error {
	o.f, o.Service = f, args[0]
	return nil
}

// Validate checks the inputs before anything is read or changed.
func (o *HoldOptions) Validate() error {
	if err := validServiceArg(o.Service); err != nil {
		return err
	}
	if strings.TrimSpace(o.Reason) == "" {
		return &flagError{fmt.Errorf("--reason is required and must not be blank: it is shown to whoever wonders why %s is not deployed", o.Service)}
	}
	return nil
}

func newCmdHold(f *Factory, runF func(context.Context, *HoldOptions) error) *cobra.Command {
	o := &HoldOptions{}
	cmd := &cobra.Command{
		Use:   "hold <service> --reason TEXT",
		Short: "Freeze a service: runs skip it until 'autodeploy resume'",
		Long: `Freeze a service without rolling it back (an incident, a maintenance window):
runs skip it, with the reason, until 'autodeploy resume <service>'. A run in
progress reads each Deployment again right before deploying it, so it skips
the service too; a rollout of it already under way is seen through (and
rolled back if it fails).`,
		Example:           `  autodeploy hold api-gateway --reason "incident 42: DB migration"`,
		Args:              exactArgs(1, "exactly one service name"),
		ValidArgsFunction: serviceCompletion(f),
		RunE:              runE(f, o, runF),
	}
	cmd.Flags().StringVar(&o.Reason, "reason", "", "why the service is held (required)")
	return cmd
}

// Run places the hold.
func (o *HoldOptions) Run(ctx context.Context) error {
	sess, err := openSession(o.f, o.Service, "hold")
	if err != nil {
		return err
	}
	defer sess.close()
	h, err := sess.m.Hold(ctx, sess.s, o.Reason)
	if err = warnOnly(o.f, err); err != nil {
		return sess.classify(err)
	}
	// Escaped: the reason may be pasted, the holder is the Lease's (anyone's
	// who may write it), and neither goes to the terminal raw.
	fmt.Fprintf(o.f.IO.Out, "%s held by %s: %s\n", sess.s.Name, ui.Escape(h.By), ui.Escape(h.Reason))
	if holder, held, err := locker(o.f, sess.cfg, sess.clients).Holder(ctx); err != nil {
		fmt.Fprintf(o.f.IO.ErrOut, "note: %v\n", holderError(err))
	} else if held {
		fmt.Fprintf(o.f.IO.ErrOut, "note: a run is in progress (%s): it will not start a rollout of %s; one already under way is seen through\n", ui.Escape(holderName(holder)), sess.s.Name)
	}
	return nil
}

// ResumeOptions are the inputs of `autodeploy resume`.
type ResumeOptions struct {
	Service      string
	ForgetFailed bool

	f *Factory
}

// Complete fills what the arguments give.
func (o *ResumeOptions) Complete(f *Factory, cmd *cobra.Command, args []string) error {
	o.f, o.Service = f, args[0]
	return nil
}

// Validate checks the inputs before anything is read or changed.
func (o *ResumeOptions) Validate() error { return validServiceArg(o.Service) }

func newCmdResume(f *Factory, runF func(context.Context, *ResumeOptions) error) *cobra.Command {
	o := &ResumeOptions{}
	cmd := &cobra.Command{
		Use:   "resume <service>",
		Short: "Release a hold (and resume the Flux Kustomization a rollback suspended)",
		Long: `Release a service held by 'hold' or 'rollback': the next run deploys the
policy's image again, unless it is the image remembered as failed; with
--forget-failed that memory is cleared too (and a pending retry after a
registry failure, so the next run tries the image at once), and under Flux
GitOps every tag autodeploy excluded for the service in its ImageRepository
is released (others' exclusions stay).`,
		Args:              exactArgs(1, "exactly one service name"),
		ValidArgsFunction: serviceCompletion(f),
		RunE:              runE(f, o, runF),
	}
	cmd.Flags().BoolVar(&o.ForgetFailed, "forget-failed", false, "also forget the image remembered as failed (or to be retried), so runs may deploy it again")
	return cmd
}

// Run releases the hold.
func (o *ResumeOptions) Run(ctx context.Context) error {
	sess, err := openSession(o.f, o.Service, "resume")
	if err != nil {
		return err
	}
	defer sess.close()
	res, err := sess.m.Resume(ctx, sess.s, o.ForgetFailed)
	if err = warnOnly(o.f, err); err != nil {
		return sess.classify(err)
	}
	out, name := o.f.IO.Out, sess.s.Name
	if res.WasHeld {
		// The hold is the Deployment's annotation: anyone's who may
		// annotate it.
		fmt.Fprintf(out, "%s resumed (was held by %s: %s)\n", name, ui.Escape(res.Hold.By), ui.Escape(res.Hold.Reason))
	} else {
		fmt.Fprintf(out, "%s was not held\n", name)
	}
	if res.Resumed != "" {
		fmt.Fprintf(out, "  Flux Kustomization %s resumed\n", ui.Escape(res.Resumed))
	}
	if res.ReconcileEnabled != "" {
		fmt.Fprintf(out, "  Flux Kustomization %s applies the Deployment again (the rollback's reconcile: disabled annotation is removed)\n", ui.Escape(res.ReconcileEnabled))
	}
	for _, p := range res.Unexcluded {
		fmt.Fprintf(out, "  exclusion removed from ImageRepository %s\n", ui.Escape(p))
	}
	if res.UnexcludeError != "" {
		fmt.Fprintf(o.f.IO.ErrOut, "warning: could not remove autodeploy's exclusion of the forgotten image: %s\n", ui.Escape(res.UnexcludeError))
	}
	if res.ForeignReconcile != "" {
		fmt.Fprintf(o.f.IO.ErrOut, "warning: the Deployment has %s: %s, not set by autodeploy (no record): Flux never applies it; left as it is (%s removes it)\n", flux.KustomizeReconcileAnnotation, flux.ReconcileDisabled, res.ForeignReconcile)
	}
	if res.KustomizationGone != "" {
		fmt.Fprintf(o.f.IO.ErrOut, "warning: Flux Kustomization %s, suspended by the rollback, no longer exists: nothing to resume\n", ui.Escape(res.KustomizationGone))
	}
	if res.ForgotFailed != "" {
		fmt.Fprintf(out, "  forgot failed image %s: runs may deploy it again\n", ui.Escape(res.ForgotFailed))
	}
	if res.StillFailed != "" {
		fmt.Fprintf(out, "  %s is still remembered as failed: runs skip it until the policy moves on (--forget-failed clears it)\n", ui.Escape(res.StillFailed))
	}
	return nil
}

// warnOnly prints an error that leaves the command's work done (the
// Deployment marked, its ReplicaSets not) as a warning, and returns the
// others.
func warnOnly(f *Factory, err error) error {
	var rm *deploy.ReplicaSetMarksError
	if errors.As(err, &rm) {
		fmt.Fprintf(f.IO.ErrOut, "warning: %v\n", err)
		return nil
	}
	return err
}

// holderName is how a lock holder is named to a person.
func holderName(h lock.Holder) string {
	if h.Pid != 0 {
		return fmt.Sprintf("pid %d, %s", h.Pid, h.Command)
	}
	return h.Command
}

// validServiceArg refuses a blank service name before the config is read.
func validServiceArg(name string) error {
	if strings.TrimSpace(name) == "" {
		return &flagError{fmt.Errorf("the service name must not be blank")}
	}
	return nil
}
