// Command cluster starts and stops autodeploy's local test cluster:
//
//	go run ./scripts/cluster up [--flux 2.7] [--dir DIR]   # last line: export KUBECONFIG=...
//	go run ./scripts/cluster status [--dir DIR]                # exit 0 when running
//	go run ./scripts/cluster down [--dir DIR]
//
// The Makefile's cluster-up and cluster-down call it; scripts/testbin/build.sh
// builds the binaries first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/autodeploy-dev/autodeploy/internal/testcluster"
)

var errNotRunning = errors.New("no cluster running")

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: cluster up|status|down [flags]")
	}
	fs := flag.NewFlagSet("cluster "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", filepath.Join(testcluster.CacheDir(), "cluster"), "state directory of the cluster")
	flux := fs.String("flux", testcluster.DefaultFlux, "Flux CRD generation to install: 2.6, 2.7, 2.9 or none")
	audit := fs.Bool("audit-log", false, "write the API server's audit log to DIR/audit.log")
	repo := fs.String("repo", ".", "repository root (for testdata/)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "up":
		if c, err := testcluster.Load(*dir); err == nil && c.Running() {
			fmt.Fprintf(os.Stderr, "cluster already running (%s, Flux %s)\n", c.Server, c.Flux)
			fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
			return nil
		} else if err == nil {
			c.Stop() // leftovers of a cluster that half died
		}
		if err := os.RemoveAll(*dir); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		root, err := filepath.Abs(*repo)
		if err != nil {
			return err
		}
		c, err := testcluster.Start(ctx, testcluster.Options{Dir: *dir, RepoRoot: root, Flux: *flux, Detach: true, AuditLog: *audit})
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "cluster up: %s, Flux %s CRDs, logs in %s\n", c.Server, c.Flux, c.Dir)
		fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
	case "status":
		c, err := testcluster.Load(*dir)
		if err != nil || !c.Running() {
			return errNotRunning
		}
		fmt.Fprintf(os.Stderr, "cluster running: %s, Flux %s CRDs, logs in %s\n", c.Server, c.Flux, c.Dir)
	case "down":
		c, err := testcluster.Load(*dir)
		if os.IsNotExist(err) {
			fmt.Fprintln(os.Stderr, "no cluster running in", *dir)
			return nil
		}
		if err != nil {
			return err
		}
		c.Stop()
		fmt.Fprintln(os.Stderr, "cluster down")
	default:
		return fmt.Errorf("unknown subcommand %q: use up or down", args[0])
	}
	return nil
}
