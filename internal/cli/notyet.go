package cli

import (
	"errors"

	"github.com/spf13/cobra"
)

// errNotImplemented is returned by commands whose issue has not landed yet,
// so that nothing pretends to work.
var errNotImplemented = errors.New("not implemented yet")

func newCmdStatus(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "status [service...]",
		Short: "Show deployments, pods, Flux detections and recent runs (not implemented yet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("autodeploy status: " + errNotImplemented.Error())
		},
	}
}
