package cli

import (
	"context"

	"github.com/spf13/cobra"
)

// options is the shape of every command, as kubectl's rollout commands have
// it: Complete fills the options from the arguments and flags, Validate
// refuses bad input before anything is read or changed (exit 2), Run acts.
type options interface {
	Complete(f *Factory, cmd *cobra.Command, args []string) error
	Validate() error
	Run(ctx context.Context) error
}

// runE wires o into cobra. runF, when not nil, replaces Run: the seam the
// tests use to see what a command line completes and validates to (gh's
// runF), without a cluster.
func runE[O options](f *Factory, o O, runF func(context.Context, O) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := o.Complete(f, cmd, args); err != nil {
			return err
		}
		if err := o.Validate(); err != nil {
			return err
		}
		if runF != nil {
			return runF(cmd.Context(), o)
		}
		return o.Run(cmd.Context())
	}
}
