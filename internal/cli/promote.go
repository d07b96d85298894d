package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/image"
)

// PromoteOptions are the inputs of `autodeploy promote`.
type PromoteOptions struct {
	Service string
	Image   string
	Reason  string
	DryRun  bool
	Force   bool
	Output  string

	f *Factory
}

// Complete takes the service argument.
func (o *PromoteOptions) Complete(f *Factory, _ *cobra.Command, args []string) error {
	o.f, o.Service = f, args[0]
	return nil
}

// Validate checks the arguments before the config or the cluster is read.
func (o *PromoteOptions) Validate() error {
	if err := validServiceArg(o.Service); err != nil {
		return err
	}
	if o.Image != "" {
		if _, err := image.Parse(o.Image); err != nil {
			return &flagError{fmt.Errorf("invalid --image %q: %v", o.Image, err)}
		}
	}
	if o.Output != "" && o.Output != "json" {
		return &flagError{fmt.Errorf("invalid --output %q: only json is supported", o.Output)}
	}
	return nil
}

const promoteLong = `Promote a service now: take the image its promote.from service runs,
verified there with its soak passed, without waiting for promote.after.

It is a run of this one service (the lock, the log, the notifications, the
exit codes of 'autodeploy run'), whose plan skips promote.after and nothing
else: the service's deploy windows, rollout, health check, soak and rollback
all apply. It prints the run's summary, on a terminal or not, and exits 7
when it does not promote (refused, held, outside a window, nothing verified
to promote: the summary says why). --image promotes another image (an earlier build, say) instead of
what the source runs. An image remembered as failed, in the source or here,
is refused unless --force. Who (SUDO_USER, else the user) and --reason go to
the log, the change-cause, the revision's promotion record (history) and the
promoted notification.`

func newCmdPromote(f *Factory, runF func(context.Context, *PromoteOptions) error) *cobra.Command {
	o := &PromoteOptions{}
	cmd := &cobra.Command{
		Use:   "promote <service>",
		Short: "Promote a service now from the service it is promoted from",
		Long:  promoteLong,
		Example: `  autodeploy promote api-gateway --reason "customer fix, verified in staging"
  autodeploy promote api-gateway --image ghcr.io/acme/api:sha-1234567 --dry-run`,
		Args:              exactArgs(1, "exactly one service name"),
		ValidArgsFunction: serviceCompletion(f),
		RunE:              runE(f, o, runF),
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Image, "image", o.Image, "promote this image instead of what the source runs")
	fl.StringVar(&o.Reason, "reason", o.Reason, "why, for the log and the notification")
	fl.BoolVar(&o.DryRun, "dry-run", o.DryRun, "print the plan and change nothing")
	fl.BoolVar(&o.Force, "force", o.Force, "promote an image remembered as failed")
	fl.StringVarP(&o.Output, "output", "o", o.Output, "print the summary as json")
	_ = cmd.RegisterFlagCompletionFunc("output", fixedValues("json"))
	return cmd
}

// Run promotes through one run of the service.
func (o *PromoteOptions) Run(ctx context.Context) error {
	cfg, err := o.f.Config()
	if err != nil {
		return err
	}
	s, err := lookupService(cfg, o.Service)
	if err != nil {
		return err
	}
	if s.Promote == nil {
		return withCode(ExitUsage, fmt.Errorf("service %s has no promote in %s: it takes its images from ImagePolicy %s/%s (autodeploy run --service %s)", s.Name, cfg.Path, s.PolicyNamespace, s.PolicyName, s.Name))
	}
	reason := o.Reason
	if reason == "" {
		reason = "no reason given"
	}
	run := &RunOptions{DryRun: o.DryRun, Output: o.Output, Services: []string{s.Name}, f: o.f, serviceSet: true,
		promote: &deploy.PromoteNow{Service: s.Name, Image: o.Image, By: actor(o.f.Getenv), Reason: reason, Force: o.Force}}
	return run.Run(ctx)
}
