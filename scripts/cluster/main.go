// Command cluster starts and stops autodeploy's local test cluster:
//
//	go run ./scripts/cluster up [--flux 2.7] [--dir DIR]   # last line: export KUBECONFIG=...
//	go run ./scripts/cluster up --k8s-version v1.28.15 --datastore kine --dir DIR   # the seed's k3s
//	go run ./scripts/cluster status [--dir DIR]                # exit 0 when running
//	go run ./scripts/cluster down [--dir DIR]
//
// The Makefile's cluster-up, cluster-up-128 and cluster-down call it;
// scripts/testbin/build.sh builds the binaries first (K8S_VERSION and
// DATASTORE choose which).
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
	k8s := fs.String("k8s-version", testcluster.DefaultK8sVersion, "Kubernetes version: its binaries are in "+testcluster.BinDir("VERSION"))
	datastore := fs.String("datastore", testcluster.DatastoreEtcd, "the API server's datastore: etcd, or kine (k3s's, over SQLite)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "up":
		if c, err := testcluster.Load(*dir); err == nil && c.Running() {
			if c.K8sVersion != *k8s || c.Datastore != *datastore {
				return fmt.Errorf("a cluster of Kubernetes %s on %s already runs in %s, not %s on %s: stop it with `go run ./scripts/cluster down --dir %s`, or use another --dir", c.K8sVersion, c.Datastore, *dir, *k8s, *datastore, *dir)
			}
			fmt.Fprintf(os.Stderr, "cluster already running (%s)\n", describe(c))
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
		c, err := testcluster.Start(ctx, testcluster.Options{Dir: *dir, RepoRoot: root, Flux: *flux, K8sVersion: *k8s, Datastore: *datastore, Detach: true, AuditLog: *audit})
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "cluster up: %s, logs in %s\n", describe(c), c.Dir)
		fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
	case "status":
		c, err := testcluster.Load(*dir)
		if err != nil || !c.Running() {
			return errNotRunning
		}
		// Asked for a kind (scripts/test.sh does), a running cluster of
		// another kind is not the one wanted: reusing it would test the
		// wrong Kubernetes.
		asked := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { asked[f.Name] = true })
		if (asked["k8s-version"] && c.K8sVersion != *k8s) || (asked["datastore"] && c.Datastore != *datastore) {
			return fmt.Errorf("the cluster in %s runs Kubernetes %s on %s, not %s on %s: stop it with `go run ./scripts/cluster down --dir %s`, or use another --dir", *dir, c.K8sVersion, c.Datastore, *k8s, *datastore, *dir)
		}
		fmt.Fprintf(os.Stderr, "cluster running: %s, logs in %s\n", describe(c), c.Dir)
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

func describe(c *testcluster.Cluster) string {
	return fmt.Sprintf("%s, Kubernetes %s on %s, Flux %s CRDs", c.Server, c.K8sVersion, c.Datastore, c.Flux)
}
