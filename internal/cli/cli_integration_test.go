//go:build integration

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

const reg = "ghcr.io/acme/"

// clusterConfig creates services (name -> initial image) with their Flux
// objects in e's namespace and returns a config file for them.
func clusterConfig(t *testing.T, e *kubetest.Env, refl *fluxsim.Reflector, services map[string]string, extra string) (string, string) {
	t.Helper()
	var y strings.Builder
	fmt.Fprintf(&y, "flux: {namespace: %s, reconcileTimeout: 20s}\ndefaults: {namespace: %s, rolloutTimeout: 60s}\n%sservices:\n", e.Namespace, e.Namespace, extra)
	for name, img := range services {
		fmt.Fprintf(&y, "  - name: %s\n", name)
		e.CreateDeployment(kubetest.Deployment{Name: name, Image: img})
		e.CreateImageRepository(fluxsim.V1, e.Namespace, name, img[:strings.LastIndex(img, ":")])
		e.CreateImagePolicy(fluxsim.V1, e.Namespace, name, name)
		if err := refl.Track(context.Background(), name, name, img); err != nil {
			t.Fatal(err)
		}
	}
	return writeConfig(t, y.String())
}

type jsonSummary struct {
	RunID    string `json:"runId"`
	FluxAPI  string `json:"fluxImageAPI"`
	Services []struct {
		Service string `json:"service"`
		Action  string `json:"action"`
		Outcome string `json:"outcome"`
		Current string `json:"current"`
		Target  string `json:"target"`
		Reason  string `json:"reason"`
		Error   string `json:"error"`
	} `json:"services"`
}

// The exit codes of `run`, each from a real situation on the cluster.
func TestRunExitCodes(t *testing.T) {
	t.Run("ok and json summary", func(t *testing.T) {
		e := kubetest.New(t)
		refl := e.StartReflector(fluxsim.V1, e.Namespace)
		cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "")
		refl.Push("api", reg+"api:sha-2")
		code, stdout, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig, "-o", "json")
		if code != ExitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var s jsonSummary
		if err := json.Unmarshal([]byte(stdout), &s); err != nil {
			t.Fatalf("json: %v\n%s", err, stdout)
		}
		if s.FluxAPI != "v1" || len(s.Services) != 1 || s.Services[0].Outcome != "deployed" || s.Services[0].Target != reg+"api:sha-2" {
			t.Fatalf("summary = %+v", s)
		}
	})
	t.Run("cron is silent", func(t *testing.T) {
		e := kubetest.New(t)
		refl := e.StartReflector(fluxsim.V1, e.Namespace)
		cfg, dir := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "")
		refl.Push("api", reg+"api:sha-2")
		code, stdout, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig)
		if code != ExitOK || stdout != "" || stderr != "" {
			t.Fatalf("exit %d, stdout %q, stderr %q: want 0 and silence", code, stdout, stderr)
		}
		log, _ := os.ReadFile(filepath.Join(dir, "autodeploy.log"))
		if !strings.Contains(string(log), "outcome=deployed") {
			t.Errorf("log:\n%s", log)
		}
	})
	t.Run("failed and rolled back", func(t *testing.T) {
		e := kubetest.New(t)
		refl := e.StartReflector(fluxsim.V1, e.Namespace)
		cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "")
		refl.Push("api", reg+"api:fail-2")
		code, stdout, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig)
		if code != ExitDeployFailed {
			t.Fatalf("exit %d, want %d: %s", code, ExitDeployFailed, stderr)
		}
		// Under cron (no TTY, no -v): one line on stderr, which cron mails.
		if stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "api rolled-back: pod api-") || !strings.Contains(stderr, "log: ") {
			t.Errorf("stdout %q, stderr %q: want one line naming the service and why", stdout, stderr)
		}
	})
	t.Run("rollback failed", func(t *testing.T) {
		e := kubetest.New(t)
		refl := e.StartReflector(fluxsim.V1, e.Namespace)
		// The revision to go back to is itself broken.
		cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:crash-1"}, "")
		refl.Push("api", reg+"api:fail-2")
		code, stdout, stderr := execute(t, nil, "run", "-v", "--config", cfg, "--kubeconfig", e.Kubeconfig)
		if code != ExitRollbackFailed {
			t.Fatalf("exit %d, want %d:\n%s\n%s", code, ExitRollbackFailed, stdout, stderr)
		}
		if !strings.Contains(stdout, "rollback-failed") || !strings.Contains(stdout, "rollback failed: pod api-") {
			t.Errorf("summary:\n%s", stdout)
		}
	})
	t.Run("missing deployment", func(t *testing.T) {
		e := kubetest.New(t)
		refl := e.StartReflector(fluxsim.V1, e.Namespace)
		cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "")
		if err := e.Kube.AppsV1().Deployments(e.Namespace).Delete(context.Background(), "api", metaDelete); err != nil {
			t.Fatal(err)
		}
		cronHearsOnce(t, cfg, e, "api skipped: Deployment "+e.Namespace+"/api not found")
	})
	t.Run("missing image policy", func(t *testing.T) {
		e := kubetest.New(t)
		refl := e.StartReflector(fluxsim.V1, e.Namespace)
		cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "")
		if err := e.Dynamic.Resource(fluxsim.V1.GVR("imagepolicies")).Namespace(e.Namespace).Delete(context.Background(), "api", metaDelete); err != nil {
			t.Fatal(err)
		}
		cronHearsOnce(t, cfg, e, "api skipped: ImagePolicy "+e.Namespace+"/api not found")
	})
}

// cronHearsOnce runs three times under cron with a standing problem: each
// exits 7, the first names the problem on stderr (cron mails it), the later
// ones print nothing (issue 17 item 10: 720 mails a day); -v still shows it.
func cronHearsOnce(t *testing.T, cfg string, e *kubetest.Env, want string) {
	t.Helper()
	for i := 0; i < 3; i++ {
		code, stdout, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig, "--no-reconcile")
		if code != ExitServiceProblem || stdout != "" {
			t.Fatalf("run %d: exit %d, want %d; stdout %q, stderr %q", i, code, ExitServiceProblem, stdout, stderr)
		}
		if i == 0 && (strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want)) {
			t.Errorf("first run: stderr %q, want one line with %q", stderr, want)
		}
		if i > 0 && stderr != "" {
			t.Errorf("run %d: stderr %q, want nothing: cron heard of it already", i, stderr)
		}
	}
	if code, stdout, _ := execute(t, nil, "run", "-v", "--config", cfg, "--kubeconfig", e.Kubeconfig, "--no-reconcile"); code != ExitServiceProblem || !strings.Contains(stdout, "not found") {
		t.Errorf("-v: exit %d, summary %q: want the problem", code, stdout)
	}
}

// Two runs at once: the second exits with the lock code while the first is
// still rolling out.
func TestRunConcurrentRuns(t *testing.T) {
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "")
	refl.Push("api", reg+"api:unready-2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inWait := make(chan struct{})
	var once sync.Once
	f := NewFactory(IOStreams{In: strings.NewReader(""), Out: &strings.Builder{}, ErrOut: progressWriter(func(line string) {
		if strings.Contains(line, "Waiting for deployment") {
			once.Do(func() { close(inWait) })
		}
	})}, func(string) string { return "" })
	first := make(chan ExitCode)
	go func() { first <- Execute(ctx, f, []string{"run", "-v", "--config", cfg, "--kubeconfig", e.Kubeconfig}) }()
	<-inWait
	code, _, _ := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig)
	if code != ExitLocked {
		t.Fatalf("second run: exit %d, want %d", code, ExitLocked)
	}
	cancel() // SIGINT for the first: it stops waiting and releases the lock
	if c := <-first; c != ExitInterrupted {
		t.Fatalf("first run: exit %d, want %d", c, ExitInterrupted)
	}
	d, err := e.Kube.AppsV1().Deployments(e.Namespace).Get(context.Background(), "api", metaGet)
	if err != nil {
		t.Fatal(err)
	}
	if d.Annotations["autodeploy.dev/verified"] != "false" {
		t.Errorf("interrupted rollout not left for verification: %v", d.Annotations)
	}
}

// A cluster without Flux's image API: exit 3 with the fix.
func TestRunWithoutFlux(t *testing.T) {
	e := kubetest.DedicatedControlPlane(t, "none")
	cfg, _ := writeConfig(t, "")
	code, _, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig)
	if code != ExitUnreachable || !strings.Contains(stderr, "image.toolkit.fluxcd.io") || !strings.Contains(stderr, "flux install") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

var (
	metaDelete = metav1.DeleteOptions{}
	metaGet    = metav1.GetOptions{}
)

// progressWriter calls fn with each complete line written.
type progressWriter func(string)

func (p progressWriter) Write(b []byte) (int, error) {
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" {
			p(l)
		}
	}
	return len(b), nil
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func jsonReason(s jsonSummary) string { return s.Services[0].Reason }

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
