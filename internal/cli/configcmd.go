package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/health"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/ui"
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
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return &flagError{fmt.Errorf("%s takes at most one file, got %d arguments", cmd.CommandPath(), len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			path := f.configPath()
			if len(args) == 1 {
				path = args[0]
			}
			cfg, err := config.Load(path)
			var fe *config.FileError
			if len(args) == 1 && errors.As(err, &fe) {
				// --config and AUTODEPLOY_CONFIG, which the hint named,
				// are not read then (issue 18, ninth pass).
				fe.Hint = "check the file given to " + cmd.CommandPath()
			}
			if err != nil {
				return err
			}
			// Not an error of the file: the environment is this shell's, and
			// cron's may differ. Runs skip the deploy until it is readable.
			for _, s := range cfg.Services {
				if s.Health == nil {
					continue
				}
				if err := health.Preflight(*s.Health); err != nil {
					// Escaped: the names come from the file (a control
					// character reached the terminal raw; issue 18,
					// seventh pass).
					fmt.Fprintf(f.IO.ErrOut, "warning: service %s: %s (here; runs deploy nothing for it until they can read it)\n", ui.Escape(s.Name), ui.Escape(err.Error()))
				}
			}
			if never := cfg.NeverFires(time.Now()); never != "" {
				fmt.Fprintf(f.IO.ErrOut, "warning: %s (fine to disable autodeploy; else change schedule in %s)\n", never, ui.Escape(path))
			}
			for _, n := range cfg.Notify {
				if err := notify.Preflight(n); err != nil {
					fmt.Fprintf(f.IO.ErrOut, "warning: notify %s: %s (here; runs send it nothing until they can read it)\n", ui.Escape(n.Name), ui.Escape(err.Error()))
				}
			}
			// The name is anyone's who may write the directory: escaped,
			// as the problems' lines are.
			path = ui.Escape(path)
			if len(cfg.Services) == 0 {
				_, err = fmt.Fprintf(f.IO.Out, "%s: ok (0 services: runs do nothing until services are configured)\n", path)
				return err
			}
			_, err = fmt.Fprintf(f.IO.Out, "%s: ok (%s)\n", path, ui.Count(len(cfg.Services), "service", "services"))
			return err
		},
	})
	return cmd
}

// lookupService finds a configured service by name; an unknown name is a
// usage error that lists the configured ones.
func lookupService(cfg *config.Config, name string) (config.Service, error) {
	if s, ok := cfg.Service(name); ok {
		return s, nil
	}
	names := make([]string, len(cfg.Services))
	for i, s := range cfg.Services {
		names[i] = s.Name
	}
	return config.Service{}, &flagError{fmt.Errorf("unknown service %q (configured: %s): check %s", name, strings.Join(names, ", "), cfg.Path)}
}
