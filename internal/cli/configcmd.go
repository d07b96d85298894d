package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

func newCmdConfig(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with the config file",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate [file]",
		Short: "Check a config file without touching the cluster",
		Long: `Check a config file without touching the cluster. Every problem is reported,
one line each with its line number; the exit code is 2 when there is any.
Without an argument the file of --config (or AUTODEPLOY_CONFIG) is checked.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := f.configPath()
			if len(args) == 1 {
				path = args[0]
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(f.IO.Out, "%s: ok (%d services)\n", path, len(cfg.Services))
			return err
		},
	})
	return cmd
}
