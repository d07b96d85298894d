package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/version"
)

func newCmdVersion(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of autodeploy",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(f.IO.Out, version.String())
			return err
		},
	}
}
