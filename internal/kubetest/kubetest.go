// Package kubetest gives integration tests a real cluster: one per test
// binary (or the one named by AUTODEPLOY_TEST_KUBECONFIG, which `make test`
// starts once for all packages), and a fresh namespace per test. Only
// _test.go files import it, so the autodeploy binary never links it.
package kubetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/autodeploy-dev/autodeploy/internal/testcluster"
)

// EnvKubeconfig names a running test cluster to reuse instead of starting one.
const EnvKubeconfig = "AUTODEPLOY_TEST_KUBECONFIG"

var shared struct {
	kubeconfig string
	cfg        *rest.Config
	kube       kubernetes.Interface
	dyn        dynamic.Interface
	// kind is what the shared cluster runs (Kubernetes version, datastore,
	// binaries), for the dedicated clusters of Dedicated: a test on the
	// 1.28/kine cluster gets a 1.28/kine cluster of its own too.
	kind testcluster.Options
}

// Main runs the tests of a package against a real cluster and returns the
// exit code for os.Exit. It never skips: an integration test binary without
// a cluster fails, so a green run always means the tests ran.
func Main(m *testing.M) int {
	kubeconfig := os.Getenv(EnvKubeconfig)
	if kubeconfig == "" {
		dir, err := os.MkdirTemp("", "autodeploy-cluster-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		c, err := testcluster.Start(ctx, testcluster.Options{Dir: dir, RepoRoot: RepoRoot()})
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "kubetest: start cluster:", err)
			return 1
		}
		defer c.Stop()
		kubeconfig = c.Kubeconfig
	} else if c, err := testcluster.Load(filepath.Dir(kubeconfig)); err == nil {
		shared.kind = testcluster.Options{K8sVersion: c.K8sVersion, Datastore: c.Datastore, BinDir: c.BinDir}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubetest:", err)
		return 1
	}
	cfg.QPS, cfg.Burst = 200, 400
	shared.kubeconfig, shared.cfg = kubeconfig, cfg
	if shared.kube, shared.dyn, err = clients(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "kubetest:", err)
		return 1
	}
	return m.Run()
}

// RepoRoot finds the module root from the test's working directory.
func RepoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}

// Env is one test's view of the cluster.
type Env struct {
	T          testing.TB
	Namespace  string
	Kubeconfig string // admin kubeconfig whose context defaults to Namespace
	Config     *rest.Config
	Kube       kubernetes.Interface
	Dynamic    dynamic.Interface
	// Cluster is the cluster of a Dedicated Env (nil on the shared one):
	// a test may restart its API server.
	Cluster *testcluster.Cluster
}

// New creates a namespace for t (deleted when t ends) and a kubeconfig
// file whose current context points at it.
func New(t testing.TB) *Env {
	t.Helper()
	if shared.kube == nil {
		t.Fatal("kubetest: no cluster; call kubetest.Main from TestMain")
	}
	ns := NewNamespace(t, "t")
	raw, err := clientcmd.LoadFromFile(shared.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range raw.Contexts {
		c.Namespace = ns
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*raw, path); err != nil {
		t.Fatal(err)
	}
	return &Env{T: t, Namespace: ns, Kubeconfig: path, Config: rest.CopyConfig(shared.cfg), Kube: shared.kube, Dynamic: shared.dyn}
}

// NewNamespace creates another namespace for t with a random suffix and
// waits for its default ServiceAccount (pods are refused until it exists).
func NewNamespace(t testing.TB, prefix string) string {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("%s-%s", prefix, hex.EncodeToString(b))
	_, err := shared.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"autodeploy-test": "true"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = shared.kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	if err := testcluster.WaitDefaultServiceAccount(ctx, shared.kube, name); err != nil {
		t.Fatal(err)
	}
	return name
}

func clients(cfg *rest.Config) (kubernetes.Interface, dynamic.Interface, error) {
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	dc, err := dynamic.NewForConfig(cfg)
	return kc, dc, err
}

// Dedicated starts a cluster of its own for t, with the CRDs of another
// Flux generation (CRDs are cluster-wide, so the shared cluster cannot
// serve two generations), and returns an Env on a fresh namespace in it.
// It runs the Kubernetes version and datastore of the shared cluster.
func Dedicated(t testing.TB, flux string) *Env {
	t.Helper()
	e := dedicated(t, testcluster.Options{Flux: flux})
	ctx := context.Background()
	e.Namespace = "apps"
	if _, err := e.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.Namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := testcluster.WaitDefaultServiceAccount(ctx, e.Kube, e.Namespace); err != nil {
		t.Fatal(err)
	}
	return e
}

// DedicatedControlPlane starts etcd and an API server only, with the CRDs
// of flux ("none" for none): enough for what never runs a pod.
func DedicatedControlPlane(t testing.TB, flux string) *Env {
	t.Helper()
	return dedicated(t, testcluster.Options{Flux: flux, ControlPlaneOnly: true})
}

func dedicated(t testing.TB, o testcluster.Options) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o.Dir, o.RepoRoot = t.TempDir(), RepoRoot()
	o.K8sVersion, o.Datastore, o.BinDir = shared.kind.K8sVersion, shared.kind.Datastore, shared.kind.BinDir
	c, err := testcluster.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kc, dc, err := clients(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{T: t, Namespace: "default", Kubeconfig: c.Kubeconfig, Config: cfg, Kube: kc, Dynamic: dc, Cluster: c}
}

// ForFlux returns an Env for a test that needs the CRDs of Flux generation
// flux: a fresh namespace on the shared cluster when that cluster has them
// (`go run ./scripts/cluster up --flux 2.6`, named by
// AUTODEPLOY_TEST_KUBECONFIG), else a cluster of its own (Dedicated).
func ForFlux(t testing.TB, flux string) *Env {
	t.Helper()
	if c, err := testcluster.Load(filepath.Dir(shared.kubeconfig)); err == nil && c.Flux == flux && c.Running() {
		return New(t)
	}
	return Dedicated(t, flux)
}
