// Package testcluster starts a real Kubernetes control plane on loopback for
// autodeploy's integration tests and demo: a datastore (etcd, or kine as k3s
// runs it), kube-apiserver (RBAC on), kube-controller-manager,
// kube-scheduler and KWOK with fake nodes, plus Flux's CRDs. The binaries
// are built from Go modules by scripts/testbin/build.sh into a cache outside
// the repository, one directory per Kubernetes version.
//
// Two clusters are tested (scripts/test.sh): DefaultK8sVersion on etcd, the
// newest Kubernetes, and SeedK8sVersion on kine, the seed's production k3s
// v1.28.5 (Kubernetes 1.28 with kine over SQLite as its datastore).
//
// It is not linked into the autodeploy binary: only tests and
// scripts/cluster import it.
package testcluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultK8sVersion is the Kubernetes version started when Options name none.
const DefaultK8sVersion = "v1.37.2"

// SeedK8sVersion is the newest patch release of the seed's Kubernetes minor
// (its k3s v1.28.5 runs Kubernetes v1.28.5): the same API, with the fixes of
// the line; run it with DatastoreKine, as k3s does.
const SeedK8sVersion = "v1.28.15"

// Datastores the API server can keep its objects in.
const (
	// DatastoreEtcd is etcd, as kubeadm and most distributions run it.
	DatastoreEtcd = "etcd"
	// DatastoreKine is kine, k3s's default datastore: the etcd v3 API
	// translated to SQL over SQLite. Its revisions, watches and compaction
	// are its own, which is what a test on it can catch.
	DatastoreKine = "kine"
)

// DefaultFlux is the Flux generation whose CRDs are installed by default: it
// serves ImagePolicy v1 and v1beta2.
const DefaultFlux = "2.7"

// Options describe the cluster to start.
type Options struct {
	// Dir holds certificates, data, logs and the kubeconfig. It is created.
	Dir string
	// K8sVersion selects the binaries, BinDir(K8sVersion); default
	// DefaultK8sVersion.
	K8sVersion string
	// BinDir overrides the binaries' directory.
	BinDir string
	// Datastore is DatastoreEtcd (default) or DatastoreKine.
	Datastore string
	// RepoRoot locates testdata/kwok and testdata/crds.
	RepoRoot string
	// Flux selects testdata/crds/flux-<Flux>; "none" installs no CRDs.
	Flux string
	// Nodes is the number of KWOK fake nodes (default 2).
	Nodes int
	// ControlPlaneOnly starts only etcd and the API server: enough to test
	// CRDs and status writes, not workloads.
	ControlPlaneOnly bool
	// Detach leaves the processes running after this process exits (make
	// cluster-up); otherwise they die with it, so a crashed test binary never
	// leaves a cluster behind.
	Detach bool
	// AuditLog enables the API server's audit log (Metadata level) at
	// Dir/audit.log, for counting requests in benchmarks.
	AuditLog bool
}

// Cluster is a running test cluster.
type Cluster struct {
	Dir        string `json:"dir"`
	Kubeconfig string `json:"kubeconfig"`
	Server     string `json:"server"`
	Flux       string `json:"flux"`
	// K8sVersion, Datastore and BinDir say what runs, so that a test can
	// start a dedicated cluster of the same kind (kubetest.Dedicated).
	K8sVersion string `json:"k8sVersion,omitempty"`
	Datastore  string `json:"datastore,omitempty"`
	BinDir     string `json:"binDir,omitempty"`
	// Procs are in start order; Stop goes in reverse so etcd stops last.
	Procs []Proc `json:"procs"`

	// What RestartAPIServer starts again (a cluster of this process).
	opts    Options
	apiArgs []string
	admin   *tls.Config
}

// Proc is one started process.
type Proc struct {
	Name string `json:"name"`
	Pid  int    `json:"pid"`
}

// CacheDir is where built binaries and other reusable state live:
// $AUTODEPLOY_CACHE, else $XDG_CACHE_HOME/autodeploy, else ~/.cache/autodeploy.
func CacheDir() string {
	if d := os.Getenv("AUTODEPLOY_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "autodeploy")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "autodeploy")
}

// BinDir is where scripts/testbin/build.sh puts the binaries of a version.
func BinDir(k8sVersion string) string {
	return filepath.Join(CacheDir(), "testbin", k8sVersion, "bin")
}

// MissingBinaries lists the binaries a cluster on datastore needs that are
// not yet built in dir.
func MissingBinaries(dir, datastore string) []string {
	var missing []string
	for _, b := range []string{datastore, "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

// Start starts a cluster and returns once the API server is ready, the fake
// nodes are Ready, the default ServiceAccount exists and the CRDs are
// established. On error, whatever was started is stopped again.
func Start(ctx context.Context, o Options) (c *Cluster, err error) {
	if o.K8sVersion == "" {
		o.K8sVersion = DefaultK8sVersion
	}
	if o.BinDir == "" {
		o.BinDir = BinDir(o.K8sVersion)
	}
	if o.Datastore == "" {
		o.Datastore = DatastoreEtcd
	}
	if o.Datastore != DatastoreEtcd && o.Datastore != DatastoreKine {
		return nil, fmt.Errorf("test cluster datastore %q: use %s or %s", o.Datastore, DatastoreEtcd, DatastoreKine)
	}
	if o.Flux == "" {
		o.Flux = DefaultFlux
	}
	if o.Nodes == 0 {
		o.Nodes = 2
	}
	if missing := MissingBinaries(o.BinDir, o.Datastore); len(missing) > 0 {
		return nil, fmt.Errorf("test cluster binaries missing in %s: %s (build them with K8S_VERSION=%s DATASTORE=%s scripts/testbin/build.sh, or make cluster-up)", o.BinDir, strings.Join(missing, ", "), o.K8sVersion, o.Datastore)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	c = &Cluster{Dir: o.Dir, Flux: o.Flux, Kubeconfig: filepath.Join(o.Dir, "kubeconfig"), K8sVersion: o.K8sVersion, Datastore: o.Datastore, BinDir: o.BinDir}
	defer func() {
		if err != nil {
			c.Stop()
			err = fmt.Errorf("%w (logs in %s)", err, o.Dir)
		}
	}()

	p, err := newPKI(o.Dir)
	if err != nil {
		return c, err
	}
	hosts := []string{"127.0.0.1", "localhost", "10.96.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if err := p.issue("apiserver", "kube-apiserver", nil, hosts); err != nil {
		return c, err
	}
	if err := p.issue("admin", "autodeploy-test-admin", []string{"system:masters"}, nil); err != nil {
		return c, err
	}
	if err := p.serviceAccountKeys(); err != nil {
		return c, err
	}

	ports, err := freePorts(5)
	if err != nil {
		return c, err
	}
	etcdPort, peerPort, apiPort, kcmPort, schedPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	if err := writeKubeconfig(c.Kubeconfig, c.Server, p, "admin"); err != nil {
		return c, err
	}

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	switch o.Datastore {
	case DatastoreEtcd:
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
		if err := c.spawn(o, "etcd",
			"--name=default", "--data-dir="+filepath.Join(o.Dir, "etcd"),
			"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
			"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
			"--initial-cluster=default="+peerURL,
			// Test data is thrown away: fsync only slows every write down.
			"--unsafe-no-fsync", "--log-level=warn",
		); err != nil {
			return c, err
		}
		if err := waitHTTP(ctx, etcdURL+"/health", nil, 30*time.Second); err != nil {
			return c, fmt.Errorf("etcd did not become healthy: %w", err)
		}
	case DatastoreKine:
		if err := os.MkdirAll(filepath.Join(o.Dir, "kine"), 0o755); err != nil {
			return c, err
		}
		if err := c.spawn(o, "kine",
			"--listen-address="+etcdURL,
			// k3s's own SQLite DSN (kine's default for a file of its own),
			// plus synchronous=OFF: test data is thrown away, and fsync only
			// slows every write down, as --unsafe-no-fsync does for etcd.
			"--endpoint=sqlite://"+filepath.Join(o.Dir, "kine", "state.db")+"?_journal=WAL&cache=shared&_busy_timeout=30000&_synchronous=OFF",
			// Its metrics listen on :8080 by default: on every address, and
			// taken by the second cluster on the machine.
			"--metrics-bind-address=0",
		); err != nil {
			return c, err
		}
		// kine speaks only gRPC (no /health): it is up once it accepts
		// connections, and the API server's /readyz checks the rest.
		if err := waitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", etcdPort), 30*time.Second); err != nil {
			return c, fmt.Errorf("kine did not start listening: %w", err)
		}
	}

	apiArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", apiPort),
		// 127.0.0.1 as advertise address is refused by the endpoint
		// reconciler, which a single loopback API server does not need.
		"--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
		"--authorization-mode=RBAC",
		"--client-ca-file=" + p.path("ca.crt"),
		"--tls-cert-file=" + p.path("apiserver.crt"), "--tls-private-key-file=" + p.path("apiserver.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.path("sa.pub"),
		"--service-account-signing-key-file=" + p.path("sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--cert-dir=" + filepath.Join(o.Dir, "apiserver-certs"),
		"--profiling=false",
	}
	if o.AuditLog {
		policy := filepath.Join(o.Dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"), 0o644); err != nil {
			return c, err
		}
		apiArgs = append(apiArgs, "--audit-policy-file="+policy, "--audit-log-path="+filepath.Join(o.Dir, "audit.log"), "--audit-log-format=json")
	}
	if err := c.spawn(o, "kube-apiserver", apiArgs...); err != nil {
		return c, err
	}
	admin, err := adminTLS(p)
	if err != nil {
		return c, err
	}
	c.opts, c.apiArgs, c.admin = o, apiArgs, admin
	if err := waitHTTP(ctx, c.Server+"/readyz", admin, 90*time.Second); err != nil {
		if derr := c.spawnCheck(o.Datastore); derr != nil {
			return c, fmt.Errorf("kube-apiserver did not become ready: %w; %w", err, derr)
		}
		return c, fmt.Errorf("kube-apiserver did not become ready: %w", err)
	}
	if err := c.spawnCheck("kube-apiserver"); err != nil {
		return c, err
	}

	if !o.ControlPlaneOnly {
		if err := c.spawn(o, "kube-controller-manager",
			"--kubeconfig="+c.Kubeconfig, "--leader-elect=false",
			"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", kcmPort),
			"--cert-dir="+filepath.Join(o.Dir, "kcm-certs"),
			"--service-account-private-key-file="+p.path("sa.key"),
			"--root-ca-file="+p.path("ca.crt"),
			"--use-service-account-credentials=false",
			"--profiling=false",
		); err != nil {
			return c, err
		}
		if err := c.spawn(o, "kube-scheduler",
			"--kubeconfig="+c.Kubeconfig, "--leader-elect=false",
			"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", schedPort),
			"--cert-dir="+filepath.Join(o.Dir, "scheduler-certs"),
			"--profiling=false",
		); err != nil {
			return c, err
		}
		kwokPort, err := freePorts(1)
		if err != nil {
			return c, err
		}
		if err := c.spawn(o, "kwok",
			"--kubeconfig="+c.Kubeconfig,
			"--config="+filepath.Join(o.RepoRoot, "testdata", "kwok", "stages.yaml"),
			"--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
			// Far from the service CIDR (10.96.0.0/16).
			"--cidr=10.244.0.1/16", "--node-ip=10.244.0.1",
			"--node-lease-duration-seconds=40",
			fmt.Sprintf("--server-address=127.0.0.1:%d", kwokPort[0]),
		); err != nil {
			return c, err
		}
	}
	if err := c.save(); err != nil {
		return c, err
	}
	if err := c.setup(ctx, o); err != nil {
		return c, err
	}
	return c, nil
}

// RestartAPIServer stops the API server (SIGTERM, as a restart of k3s
// does) and starts it again on the same port and datastore, returning once
// it is ready: what a client's open watches and requests see of an API
// server restart.
func (c *Cluster) RestartAPIServer(ctx context.Context) error {
	i := slices.IndexFunc(c.Procs, func(p Proc) bool { return p.Name == "kube-apiserver" })
	if i < 0 || c.apiArgs == nil {
		return fmt.Errorf("no API server of this process to restart")
	}
	stopProc(c.Procs[i])
	if err := c.spawn(c.opts, "kube-apiserver", c.apiArgs...); err != nil {
		return err
	}
	// spawn appended it: back to its place in the start order (Stop).
	c.Procs[i] = c.Procs[len(c.Procs)-1]
	c.Procs = c.Procs[:len(c.Procs)-1]
	return waitHTTP(ctx, c.Server+"/readyz", c.admin, 90*time.Second)
}

// spawn starts one binary with its output in Dir/<name>.log.
func (c *Cluster) spawn(o Options, name string, args ...string) error {
	logf, err := os.OpenFile(filepath.Join(o.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(o.BinDir, name), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = o.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !o.Detach {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	// Reap it in the background so a process that exits early is not left a
	// zombie that still looks alive to spawnCheck.
	go func() { _ = cmd.Wait() }()
	c.Procs = append(c.Procs, Proc{Name: name, Pid: cmd.Process.Pid})
	return nil
}

// spawnCheck fails when the named process has already exited.
func (c *Cluster) spawnCheck(name string) error {
	for _, p := range c.Procs {
		if p.Name == name && !alive(p) {
			return fmt.Errorf("%s exited; see %s", name, filepath.Join(c.Dir, name+".log"))
		}
	}
	return nil
}

// Stop stops every process of the cluster, in reverse start order, so etcd
// goes last (an API server that loses etcd first hangs on shutdown).
func (c *Cluster) Stop() {
	for i := len(c.Procs) - 1; i >= 0; i-- {
		stopProc(c.Procs[i])
	}
	c.Procs = nil
	_ = os.Remove(statePath(c.Dir))
}

func stopProc(p Proc) {
	if !alive(p) {
		return
	}
	_ = syscall.Kill(-p.Pid, syscall.SIGTERM)
	deadline := time.Now().Add(15 * time.Second)
	for alive(p) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(p) {
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	}
}

// alive reports whether pid still runs the named binary: a pid recycled by
// another program must never be signalled.
func alive(p Proc) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid))
	if err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid))
	if err == nil {
		// Field 3 is the state; Z is a zombie that is only waiting to be reaped.
		if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return false
		}
	}
	argv0 := strings.SplitN(string(b), "\x00", 2)[0]
	return filepath.Base(argv0) == p.Name
}

func statePath(dir string) string { return filepath.Join(dir, "cluster.json") }

func (c *Cluster) save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(statePath(c.Dir), b, 0o644)
}

// Load reads the state a detached Start left in dir, for cluster-down and
// for reuse by tests.
func Load(dir string) (*Cluster, error) {
	b, err := os.ReadFile(statePath(dir))
	if err != nil {
		return nil, err
	}
	var c Cluster
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(dir), err)
	}
	// State written before K8sVersion and Datastore were recorded is of the
	// only cluster there was then.
	if c.K8sVersion == "" {
		c.K8sVersion, c.Datastore, c.BinDir = DefaultK8sVersion, DatastoreEtcd, BinDir(DefaultK8sVersion)
	}
	return &c, nil
}

// Running reports whether every process of a loaded cluster is alive.
func (c *Cluster) Running() bool {
	if len(c.Procs) == 0 {
		return false
	}
	for _, p := range c.Procs {
		if !alive(p) {
			return false
		}
	}
	return true
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		_, port, _ := net.SplitHostPort(l.Addr().String())
		pn, _ := strconv.Atoi(port)
		ports = append(ports, pn)
	}
	return ports, nil
}

var errTimeout = errors.New("timed out")
