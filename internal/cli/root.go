// Package cli is autodeploy's command tree: flags, wiring and exit codes.
// The work itself lives in the packages the commands call.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/fatih/color"
	"github.com/go-logr/logr"
	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"github.com/autodeploy-dev/autodeploy/internal/ui"
)

// DefaultConfigPath is used when neither --config nor AUTODEPLOY_CONFIG is set.
const DefaultConfigPath = "/etc/autodeploy/config.yaml"

// IOStreams are the command's standard streams. Commands write results to
// Out and progress, warnings and errors to ErrOut, never to os.Stdout.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// OutTTY and ErrTTY say whether a person is watching: they decide colour
	// and live progress.
	OutTTY, ErrTTY bool
}

// globalOptions are the persistent flags shared by every command.
type globalOptions struct {
	ConfigPath string
	Kube       kube.Options
	Color      string
	Verbose    bool
}

// Factory hands commands their dependencies lazily, so `--help` and
// `config validate` never touch a cluster and tests can swap any piece.
type Factory struct {
	IO      IOStreams
	Getenv  func(string) string
	Options *globalOptions
	// Name is the command as the user types it: "autodeploy", or "kubectl
	// autodeploy" when kubectl runs the binary as its plugin (it finds
	// kubectl-autodeploy on PATH). Help, usage and error hints use it.
	Name string

	Config  func() (*config.Config, error)
	Clients func() (*kube.Clients, error)
}

// NewFactory wires the default implementations around streams.
func NewFactory(streams IOStreams, getenv func(string) string) *Factory {
	f := &Factory{IO: streams, Getenv: getenv, Options: &globalOptions{Color: "auto"}, Name: "autodeploy"}
	var (
		cfg     *config.Config
		clients *kube.Clients
	)
	f.Config = func() (*config.Config, error) {
		if cfg != nil {
			return cfg, nil
		}
		c, err := config.Load(f.configPath())
		if err != nil {
			return nil, err
		}
		cfg = c
		return cfg, nil
	}
	f.Clients = func() (*kube.Clients, error) {
		if clients != nil {
			return clients, nil
		}
		c, err := kube.New(f.Options.Kube)
		if err != nil {
			return nil, err
		}
		clients = c
		return clients, nil
	}
	return f
}

// configPath applies the documented precedence: flag, environment, default.
func (f *Factory) configPath() string {
	if f.Options.ConfigPath != "" {
		return f.Options.ConfigPath
	}
	if p := f.Getenv("AUTODEPLOY_CONFIG"); p != "" {
		return p
	}
	return DefaultConfigPath
}

// NewRootCmd builds the whole command tree around f.
func NewRootCmd(f *Factory) *cobra.Command {
	o := f.Options
	root := &cobra.Command{
		Use:   "autodeploy",
		Short: "Keep Deployments on the newest image Flux has detected",
		Long: `autodeploy keeps the services of a small Kubernetes cluster on the newest image
that Flux's image automation (ImagePolicy) has detected. Run it from cron:

    */2 * * * * autodeploy run

and by hand: autodeploy status, autodeploy rollback <service>.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// cobra names the root in usage lines and CommandPath from this
		// annotation, so "kubectl autodeploy status" reads as typed.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: f.Name},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			// Under a second, requests of a healthy API server time out (1ns:
			// every command said the cluster was unreachable, exit 3, and
			// doctor to check that it runs; issue 18, ninth pass): at least
			// 1s, as the config's rolloutTimeout and reconcileTimeout.
			if t := f.Options.Kube.Timeout; t != 0 && t < minRequestTimeout {
				return &flagError{fmt.Errorf("--request-timeout must be at least %s (or 0, the default 30s), got %s", minRequestTimeout, t)}
			}
			return f.applyColor()
		},
	}
	fs := root.PersistentFlags()
	fs.StringVar(&o.ConfigPath, "config", o.ConfigPath, "config file (env AUTODEPLOY_CONFIG, default "+DefaultConfigPath+")")
	fs.StringVar(&o.Kube.Kubeconfig, "kubeconfig", o.Kube.Kubeconfig, "kubeconfig file (default: KUBECONFIG, ~/.kube/config, in-cluster, then "+kube.K3sKubeconfig+")")
	fs.StringVar(&o.Kube.Context, "context", o.Kube.Context, "kubeconfig context to use")
	fs.DurationVar(&o.Kube.Timeout, "request-timeout", 0, "timeout of each API request (default 30s)")
	fs.StringVar(&o.Color, "color", o.Color, "colour output: auto, always or never (auto honours NO_COLOR; the flag wins over it)")
	fs.BoolVarP(&o.Verbose, "verbose", "v", o.Verbose, "print progress and results (by default a run under cron prints nothing)")
	_ = root.RegisterFlagCompletionFunc("color", cobra.FixedCompletions([]string{"auto", "always", "never"}, cobra.ShellCompDirectiveNoFileComp))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &flagError{cleanFlagError(err)} })

	root.AddCommand(
		newCmdRun(f, nil),
		newCmdWatch(f, nil),
		newCmdPromote(f, nil),
		newCmdStatus(f, nil),
		newCmdRollback(f, nil),
		newCmdHold(f, nil),
		newCmdResume(f, nil),
		newCmdForget(f, nil),
		newCmdHistory(f, nil),
		newCmdManifests(f),
		newCmdDoctor(f, nil),
		newCmdConfig(f),
		newCmdVersion(f),
	)
	// cobra's own completion and help commands print help and exit 0 for a
	// missing or unknown argument; like every other usage mistake, these
	// exit 2 with a one-line error.
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "completion", "manifests", "config":
			requireSubcommand(c)
		case "help":
			c.RunE = func(cmd *cobra.Command, args []string) error {
				target, rest, err := root.Find(args)
				if err != nil || len(rest) > 0 {
					return &flagError{fmt.Errorf("unknown help topic %q: see '%s --help'", strings.Join(args, " "), root.CommandPath())}
				}
				return target.Help()
			}
			c.Run = nil
		}
	}
	return root
}

// strconvNoise is how strconv's errors read inside pflag's: Go's function
// names say nothing to an operator.
var strconvNoise = regexp.MustCompile(`strconv\.Parse\w+: parsing "[^"]*": (invalid syntax|value out of range)`)

// durationNoise is time.ParseDuration's error inside pflag's: "time:" names
// Go's package, not the fix (--for 2d, --lock-timeout 5).
var durationNoise = regexp.MustCompile(`time: ((?:invalid|unknown unit|missing unit)[^\n]*? in duration "[^"]*"|invalid duration "[^"]*")$`)

// cleanFlagError rewrites pflag's "invalid argument" errors without Go's
// internals: `invalid argument "abc" for "--to-revision" flag: not a number`.
func cleanFlagError(err error) error {
	msg := durationNoise.ReplaceAllStringFunc(err.Error(), func(m string) string {
		m = strings.TrimPrefix(m, "time: ")
		fix := config.DurationFix(m[strings.LastIndex(m[:len(m)-1], `"`)+1 : len(m)-1])
		if fix == config.DurationSyntax {
			fix += "; days as hours: 48h"
		}
		return m + " (" + fix + ")"
	})
	msg = strconvNoise.ReplaceAllStringFunc(msg, func(m string) string {
		switch {
		case strings.HasPrefix(m, "strconv.ParseBool"):
			return "use true or false"
		case strings.HasSuffix(m, "value out of range"):
			return "number out of range"
		}
		return "not a number"
	})
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

// requireSubcommand makes a command that only groups others fail with a
// usage error when called without one, or with an unknown one.
func requireSubcommand(cmd *cobra.Command) {
	var names []string
	for _, c := range cmd.Commands() {
		if !c.Hidden && c.Name() != "help" {
			names = append(names, c.Name())
		}
	}
	list := strings.Join(names, ", ")
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return &flagError{fmt.Errorf("%s needs one of: %s", c.CommandPath(), list)}
		}
		return &flagError{fmt.Errorf("unknown %s %q: use one of %s", c.CommandPath(), args[0], list)}
	}
}

// applyColor decides colour once for the process, as fatih/color keeps it
// in a global.
func (f *Factory) applyColor() error {
	switch f.Options.Color {
	case "always":
		color.NoColor = false
	case "never":
		color.NoColor = true
	case "auto":
		color.NoColor = f.Getenv("NO_COLOR") != "" || !f.IO.OutTTY || f.Getenv("TERM") == "dumb"
	default:
		return &flagError{fmt.Errorf("invalid --color %q: use auto, always or never", f.Options.Color)}
	}
	return nil
}

// Main runs the CLI with the process's streams and arguments and returns the
// exit code; it is the only caller of the error-to-code mapping.
func Main() ExitCode {
	streams := IOStreams{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		OutTTY: isatty.IsTerminal(os.Stdout.Fd()),
		ErrTTY: isatty.IsTerminal(os.Stderr.Fd()),
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, stop := interruptContext(context.Background(), sigs, streams.ErrOut, streams.ErrTTY, func(c ExitCode) { os.Exit(int(c)) })
	defer stop()
	f := NewFactory(streams, os.Getenv)
	f.Name = commandName(os.Args[0])
	return Execute(ctx, f, os.Args[1:])
}

// kubectlPlugin is the binary's name as a kubectl plugin: kubectl runs
// kubectl-<name> from PATH for `kubectl <name>`.
const kubectlPlugin = "kubectl-autodeploy"

// commandName is how the user invoked autodeploy, from argv[0]: under the
// plugin's name (a symlink or copy named kubectl-autodeploy) it is "kubectl
// autodeploy"; any other name is autodeploy, whatever the file is called.
func commandName(argv0 string) string {
	if strings.TrimSuffix(filepath.Base(argv0), ".exe") == kubectlPlugin {
		return "kubectl autodeploy"
	}
	return "autodeploy"
}

// Execute runs args against the command tree and prints any error as one
// line on ErrOut. Tests call it directly.
func Execute(ctx context.Context, f *Factory, args []string) ExitCode {
	return executeRoot(ctx, f, NewRootCmd(f), args)
}

// executeRoot is Execute on a given command tree: tests swap a command for
// one built with their runF.
func executeRoot(ctx context.Context, f *Factory, root *cobra.Command, args []string) ExitCode {
	silenceKlog()
	root.SetArgs(args)
	root.SetIn(f.IO.In)
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	code := exitCodeFor(err)
	var silent *silentError
	if !errors.As(err, &silent) {
		msg := strings.TrimSpace(err.Error())
		if msg == context.Canceled.Error() {
			msg = "interrupted (SIGINT or SIGTERM)"
		}
		// Escaped line by line: errors quote paths and the cluster's text
		// (issue 18, item 9), and a config's problems are one a line.
		lines := strings.Split(msg, "\n")
		for i, l := range lines {
			lines[i] = ui.Escape(l)
		}
		fmt.Fprintln(f.IO.ErrOut, "Error: "+strings.Join(lines, "\n"))
	}
	var fe *flagError
	if errors.As(err, &fe) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintf(f.IO.ErrOut, "See '%s --help'.\n", cmd.CommandPath())
		code = ExitUsage
	}
	return code
}

// silenceKlog: client-go logs through klog on the process's stderr, beside
// the error it returns: a cut answer printed "Unexpected error when reading
// response body" as well as the command's own error line (issue 18, fifth
// pass, TestKlogSilencedForEveryCommand), and the watch's informers a line
// per retry, which journald must not get (the watch says its own state
// changes once each in its log, watch.Watcher). Every command says its
// errors itself, once.
func silenceKlog() { klog.SetLogger(logr.Discard()) }

// silentError is an error whose story was already told (a run's summary):
// it only sets the exit code.
type silentError struct{ err error }

func (e *silentError) Error() string { return e.err.Error() }
func (e *silentError) Unwrap() error { return e.err }

// exactArgs is cobra.ExactArgs with a usage-error type, so a wrong argument
// count exits 2 with a hint like any other usage error.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return &flagError{fmt.Errorf("%s takes %s, got %d argument(s)", cmd.CommandPath(), what, len(args))}
		}
		return nil
	}
}

// minRequestTimeout is the shortest --request-timeout taken.
const minRequestTimeout = time.Second
