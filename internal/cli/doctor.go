package cli

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/doctor"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/ui"
)

// DoctorOptions are the inputs of `autodeploy doctor`.
type DoctorOptions struct {
	Output string

	f *Factory
}

// Complete takes the factory; doctor has no arguments.
func (o *DoctorOptions) Complete(f *Factory, cmd *cobra.Command, _ []string) error {
	o.f = f
	return nil
}

// Validate checks the flags.
func (o *DoctorOptions) Validate() error {
	if o.Output != "" && o.Output != "json" {
		return &flagError{fmt.Errorf("invalid --output %q: only json is supported", o.Output)}
	}
	return nil
}

func newCmdDoctor(f *Factory, runF func(context.Context, *DoctorOptions) error) *cobra.Command {
	o := &DoctorOptions{}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check everything a run needs, before cron finds out",
		Long: `Check, one line each with the fix: the config; the kubeconfig used; the API
server and its version; Flux's image API and the versions served; each
service's Deployment, container and ImagePolicy, and whether the policy is
Ready; a Ready Flux Receiver listing every ImageRepository behind them (a
warning without one: cron needs none); each promotion's chain back to its
ImagePolicy (every promote.from's Deployment and container); each service's
deploy windows (they parse, their time zones load, they can hold its
rolloutTimeout plus soak, when the next opens); the permissions of every
command (SelfSubjectAccessReview); that the
log and lock can be written; a crontab or systemd timer running
'autodeploy run' on the configured schedule; and the seed's trap, an
alphabetical policy over sha-<hex> tags. Exit code 1 when a check fails.`,
		Args: exactArgs(0, "no arguments"),
		RunE: runE(f, o, runF),
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "json")
	_ = cmd.RegisterFlagCompletionFunc("output", fixedValues("json"))
	return cmd
}

// Run runs the checks and prints them.
func (o *DoctorOptions) Run(ctx context.Context) error {
	f := o.f
	in := doctor.Inputs{ConfigPath: f.configPath(), Host: hostSchedules(), Now: time.Now()}
	in.Config, in.ConfigErr = f.Config()
	in.Clients, in.ClientsErr = f.Clients()
	if in.Config != nil && (in.Config.Lock.Type != config.LockLease || in.ClientsErr == nil) {
		wl, name, _ := watchLocker(f, in.Config, in.Clients)
		in.Host.WatchLock = name
		in.Host.Watch = func() (lock.Holder, bool, error) { return wl.Holder(ctx) }
	}
	r := doctor.Run(ctx, in)
	if err := context.Cause(ctx); err != nil {
		// A signal cut the checks short: the report would blame the
		// cluster for it. errInterrupted is a context.Canceled: exit 130.
		return fmt.Errorf("doctor stopped before its checks were done: %w", err)
	}
	if o.Output == "json" {
		if err := writeJSON(f.IO.Out, r); err != nil {
			return err
		}
	} else {
		mark := map[string]string{doctor.OK: ui.Green.Sprintf("✔"), doctor.Warn: ui.Yellow.Sprintf("⚠"), doctor.Fail: ui.Red.Sprintf("✗")}
		// Details quote paths, kubeconfigs and the cluster's messages:
		// escaped (ui.Escape), as status escapes them.
		for _, c := range r.Checks {
			fmt.Fprintf(f.IO.Out, "%s %-11s %s\n", mark[c.Status], ui.Escape(c.Name), ui.Escape(c.Detail))
			if c.Fix != "" && c.Status != doctor.OK {
				fmt.Fprintf(f.IO.Out, "  %-11s fix: %s\n", "", ui.Escape(c.Fix))
			}
		}
	}
	if r.Failed {
		return withCode(ExitError, &silentError{errors.New("doctor found problems")})
	}
	return nil
}

// hostSchedules is where cron and systemd keep schedules on a Debian-like
// host.
func hostSchedules() doctor.Host {
	h := doctor.Host{CronFiles: []string{"/etc/crontab"}, DefaultConfig: DefaultConfigPath}
	if _, err := exec.LookPath("crontab"); err == nil {
		h.Crontab = func() (string, error) {
			out, err := exec.Command("crontab", "-l").Output()
			return string(out), err
		}
	}
	d, _ := filepath.Glob("/etc/cron.d/*")
	h.CronFiles = append(h.CronFiles, d...)
	for _, dir := range []string{"/etc/systemd/system", "/lib/systemd/system"} {
		t, _ := filepath.Glob(filepath.Join(dir, "autodeploy*.timer"))
		h.TimerFiles = append(h.TimerFiles, t...)
	}
	return h
}
