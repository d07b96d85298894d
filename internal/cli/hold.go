package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/lock"
)

func newCmdHold(f *Factory) *cobra.Command {
	var reason string
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
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return &flagError{fmt.Errorf("--reason is required: it is shown to whoever wonders why %s is not deployed", args[0])}
			}
			return runHold(cmd.Context(), f, args[0], reason)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the service is held (required)")
	return cmd
}

func runHold(ctx context.Context, f *Factory, name, reason string) error {
	m, s, cfg, cleanup, err := manager(f, name, "hold")
	if err != nil {
		return err
	}
	defer cleanup()
	h, err := m.Hold(ctx, s, reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(f.IO.Out, "%s held by %s: %s\n", s.Name, h.By, h.Reason)
	if held, holder := lock.Held(cfg.LockFile); held {
		fmt.Fprintf(f.IO.ErrOut, "note: a run is in progress (pid %d): it will not start a rollout of %s; one already under way is seen through\n", holder.Pid, s.Name)
	}
	return nil
}

func newCmdResume(f *Factory) *cobra.Command {
	var forget bool
	cmd := &cobra.Command{
		Use:   "resume <service>",
		Short: "Release a hold (and resume the Flux Kustomization a rollback suspended)",
		Long: `Release a service held by 'hold' or 'rollback': the next run deploys the
policy's image again, unless it is the image remembered as failed; with
--forget-failed that memory is cleared too.`,
		Args:              exactArgs(1, "exactly one service name"),
		ValidArgsFunction: serviceCompletion(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runResume(cmd.Context(), f, args[0], forget)
		},
	}
	cmd.Flags().BoolVar(&forget, "forget-failed", false, "also forget the image remembered as failed, so runs may deploy it again")
	return cmd
}

func runResume(ctx context.Context, f *Factory, name string, forget bool) error {
	m, s, _, cleanup, err := manager(f, name, "resume")
	if err != nil {
		return err
	}
	defer cleanup()
	res, err := m.Resume(ctx, s, forget)
	if err != nil {
		return err
	}
	out := f.IO.Out
	if res.WasHeld {
		fmt.Fprintf(out, "%s resumed (was held by %s: %s)\n", s.Name, res.Hold.By, res.Hold.Reason)
	} else {
		fmt.Fprintf(out, "%s was not held\n", s.Name)
	}
	if res.Resumed != "" {
		fmt.Fprintf(out, "  Flux Kustomization %s resumed\n", res.Resumed)
	}
	if res.ForgotFailed != "" {
		fmt.Fprintf(out, "  forgot failed image %s: runs may deploy it again\n", res.ForgotFailed)
	}
	if res.StillFailed != "" {
		fmt.Fprintf(out, "  %s is still remembered as failed: runs skip it until the policy moves on (--forget-failed clears it)\n", res.StillFailed)
	}
	return nil
}
