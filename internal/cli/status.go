package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
	"github.com/autodeploy-dev/autodeploy/internal/status"
)

// StatusOptions are the inputs of `autodeploy status`.
type StatusOptions struct {
	Services []string
	Output   string
	Watch    bool
	Interval time.Duration
	LogLines int
	Wide     bool
	Details  bool

	f *Factory
}

// Complete fills what the arguments give.
func (o *StatusOptions) Complete(f *Factory, cmd *cobra.Command, args []string) error {
	o.f, o.Services = f, args
	return nil
}

// Validate checks the flags before anything is read.
func (o *StatusOptions) Validate() error {
	for _, s := range o.Services {
		if err := validServiceArg(s); err != nil {
			return err
		}
	}
	if o.Output != "" && o.Output != "json" && o.Output != "wide" {
		return &flagError{fmt.Errorf("invalid --output %q: use json or wide", o.Output)}
	}
	if o.Watch && o.Output == "json" {
		return &flagError{errors.New("--watch and -o json do not mix: poll with -o json instead")}
	}
	if o.LogLines < 0 {
		return &flagError{fmt.Errorf("--log-lines must not be negative, got %d", o.LogLines)}
	}
	if o.Interval < time.Second {
		// Each frame reads every service: more often would only load the
		// API server.
		return &flagError{fmt.Errorf("--interval must be at least 1s, got %s", o.Interval)}
	}
	return nil
}

const statusLong = `Show each service at a glance: its Deployment (ready replicas, image, rollout
state as 'kubectl rollout status' judges it), how it stands against its
ImagePolicy (up to date, behind, ahead), the ImageRepository's last scan,
autodeploy's marks (held, failed image, unverified rollout), the pods of the
current and previous ReplicaSets, the last run from the log, a run in
progress, and the next scheduled run.

Services that need attention get a detailed block; name services (or pass
--details) to see it for every one. Read-only: it works while a run holds the
lock, and makes a handful of LIST requests whatever the number of pods.

Exit code 0 when every service is healthy, up to date, not held and
verified; 8 otherwise, so a monitoring check can call it.`

func newCmdStatus(f *Factory, runF func(context.Context, *StatusOptions) error) *cobra.Command {
	o := &StatusOptions{Interval: 2 * time.Second}
	cmd := &cobra.Command{
		Use:   "status [service...]",
		Short: "Show deployments, pods, Flux detections, recent and next runs",
		Long:  statusLong,
		Example: `  autodeploy status
  autodeploy status api-gateway --log-lines 20
  autodeploy status -o json | jq '.services[] | select(.sync != "up-to-date")'
  autodeploy status -w`,
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			return serviceNames(f)(args)
		},
		RunE: runE(f, o, runF),
	}
	fl := cmd.Flags()
	fl.StringVarP(&o.Output, "output", "o", o.Output, "json, or wide for full image references")
	fl.BoolVarP(&o.Watch, "watch", "w", o.Watch, "refresh in place until Ctrl-C")
	fl.DurationVar(&o.Interval, "interval", o.Interval, "refresh interval of --watch")
	fl.IntVar(&o.LogLines, "log-lines", o.LogLines, "also show the last N lines of the log")
	fl.BoolVar(&o.Details, "details", o.Details, "show the detailed block of every service")
	_ = cmd.RegisterFlagCompletionFunc("output", fixedValues("json", "wide"))
	return cmd
}

// Run prints the status (or redraws it, with --watch).
func (o *StatusOptions) Run(ctx context.Context) error {
	f := o.f
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	services := cfg.Services
	if len(o.Services) > 0 {
		services = nil
		for _, name := range o.Services {
			s, err := lookupService(cfg, name)
			if err != nil {
				return err
			}
			services = append(services, s)
		}
	}
	clients, err := f.Clients()
	if err != nil {
		return err
	}
	report := func() (*status.Report, error) {
		objs, err := status.Collect(ctx, clients.Kube, clients.Dynamic, cfg.WithSources(services))
		if err != nil {
			return nil, clients.Classify(err)
		}
		return status.Build(cfg, services, objs, readLocal(ctx, f, cfg, clients, o.LogLines), time.Now()), nil
	}
	text := status.TextOptions{Details: o.Details || len(o.Services) > 0, Wide: o.Output == "wide"}
	if o.Watch {
		return watchStatus(ctx, f, report, text, o.Interval)
	}
	r, err := report()
	if err != nil {
		return err
	}
	if o.Output == "json" {
		err = writeJSON(f.IO.Out, r)
	} else {
		err = status.WriteText(f.IO.Out, r, text)
	}
	if err != nil {
		return err
	}
	if !r.Healthy {
		return withCode(ExitDegraded, &silentError{errors.New("some services are not healthy and up to date")})
	}
	return nil
}

// readLocal reads the lock holder and the watch's (from the configured
// locks, never taking them) and this host's log.
func readLocal(ctx context.Context, f *Factory, cfg *config.Config, clients *kube.Clients, logLines int) status.Local {
	var l status.Local
	wl, name, _ := watchLocker(f, cfg, clients)
	l.WatchLock = name
	if h, held, err := wl.Holder(ctx); err != nil {
		l.WatchErr = holderError(clients, err)
	} else {
		l.WatchHolder, l.WatchHeld = &h, held
	}
	if h, held, err := locker(f, cfg, clients).Holder(ctx); err != nil {
		l.HolderErr = holderError(clients, err)
	} else if held {
		l.Holder = &h
	}
	l.LastRun, l.LastRunErr = runlog.LastRun(cfg.Log.File)
	if logLines > 0 {
		l.Log, _ = runlog.Tail(cfg.Log.File, logLines)
	}
	return l
}

// watchStatus redraws the status in place, as watch(1) would, until the
// context ends (Ctrl-C), which is how a watch normally ends: exit 0.
func watchStatus(ctx context.Context, f *Factory, report func() (*status.Report, error), o status.TextOptions, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		var buf bytes.Buffer
		r, err := report()
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(&buf, "error: %v\n", err)
		} else if r != nil {
			_ = status.WriteText(&buf, r, o)
		}
		if ctx.Err() != nil {
			return nil
		}
		if f.IO.OutTTY {
			// Home, clear, then the frame in one write: no flicker.
			fmt.Fprintf(f.IO.Out, "\033[H\033[2J%s\nevery %s, Ctrl-C to stop\n", buf.Bytes(), every)
		} else {
			// Into a file or a pipe: frames one after another, no escapes.
			fmt.Fprintf(f.IO.Out, "%s\nevery %s, Ctrl-C to stop\n\n", buf.Bytes(), every)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
