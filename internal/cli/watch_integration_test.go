//go:build integration

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
)

// runningWatch is `autodeploy watch -v` in this process: its log (log.file
// "-") on out, its progress and mail-worthy lines on errOut.
type runningWatch struct {
	out, errOut *kubetest.Lines
	cancel      context.CancelFunc
	done        chan ExitCode
}

func startWatch(t *testing.T, cfg, kubeconfig string) *runningWatch {
	t.Helper()
	w := &runningWatch{out: kubetest.NewLines(), errOut: kubetest.NewLines(), done: make(chan ExitCode, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	f := NewFactory(IOStreams{In: strings.NewReader(""), Out: w.out, ErrOut: w.errOut}, func(string) string { return "" })
	go func() {
		w.done <- Execute(ctx, f, []string{"watch", "-v", "--config", cfg, "--kubeconfig", kubeconfig})
	}()
	t.Cleanup(func() { w.stop(t) })
	// The start pass is over: the watch waits for events.
	w.out.WaitFor(t, 0, "watch: watching")
	w.out.WaitFor(t, 0, "trigger=start", `msg="run finished"`)
	return w
}

// stop is SIGTERM: the first signal cancels the command's context.
func (w *runningWatch) stop(t *testing.T) ExitCode {
	t.Helper()
	w.cancel()
	select {
	case c := <-w.done:
		w.done <- c
		return c
	case <-time.After(time.Minute):
		t.Fatal("the watch did not stop")
		return 0
	}
}

// receiverRequest is what a Flux Receiver writes on a webhook: a
// reconcile request on the ImageRepository.
func receiverRequest(t *testing.T, e *kubetest.Env, repo string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, fluxsim.ReconcileAnnotation, time.Now().Format(time.RFC3339Nano))
	if _, err := e.Dynamic.Resource(fluxsim.V1.GVR("imagerepositories")).Namespace(e.Namespace).Patch(context.Background(), repo, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

const watchLog = "log: {file: \"-\"}\n"

// A push through fluxsim is deployed by a running watch, with no run; a
// second push too; the log names the trigger of each.
func TestWatchDeploysPushes(t *testing.T) {
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1", "web": reg + "web:sha-1"}, watchLog)
	w := startWatch(t, cfg, e.Kubeconfig)
	for _, tag := range []string{"sha-2", "sha-3"} {
		from := len(strings.Split(w.out.String(), "\n"))
		refl.Push("api", reg+"api:"+tag)
		receiverRequest(t, e, "api")
		w.out.WaitFor(t, from, "trigger=policy-change", "svc=api", "outcome=deployed")
		if got := kubetest.Image(e.GetDeployment("api")); got != reg+"api:"+tag {
			t.Fatalf("after %s: image %s", tag, got)
		}
		if w.out.Count("trigger=policy-change", "svc=web", `msg=plan`) != 0 {
			t.Errorf("the change of api's policy planned web too:\n%s", w.out)
		}
	}
	if c := w.stop(t); c != ExitOK {
		t.Errorf("watch exit %d after SIGTERM, want 0; stderr:\n%s", c, w.errOut)
	}
}

// A bad image is rolled back and remembered exactly as by run, and the
// line cron would mail is on stderr (journald).
func TestWatchRollsBackABadImage(t *testing.T) {
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, watchLog)
	w := startWatch(t, cfg, e.Kubeconfig)
	refl.Push("api", reg+"api:fail-2")
	receiverRequest(t, e, "api")
	w.out.WaitFor(t, 0, "trigger=policy-change", "svc=api", "outcome=rolled-back")
	d := e.GetDeployment("api")
	if fi, ok := deploy.ParseFailedImage(d.Annotations); kubetest.Image(d) != reg+"api:sha-1" || !ok || fi.Image != reg+"api:fail-2" {
		t.Fatalf("image %s, failed image %+v: want rolled back and remembered", kubetest.Image(d), fi)
	}
	w.errOut.WaitFor(t, 0, "api rolled-back: pod api-")
}

// A hold placed while the watch runs is honoured at its next action; a
// manual rollback is never kept waiting by an idle watch.
func TestWatchHoldAndManualRollback(t *testing.T) {
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	cfg, dir := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, watchLog)
	w := startWatch(t, cfg, e.Kubeconfig)
	if code, _, stderr := execute(t, nil, "hold", "api", "--reason", "incident", "--config", cfg, "--kubeconfig", e.Kubeconfig); code != ExitOK {
		t.Fatalf("hold: exit %d: %s", code, stderr)
	}
	refl.Push("api", reg+"api:sha-2")
	receiverRequest(t, e, "api")
	w.out.WaitFor(t, 0, "trigger=policy-change", "svc=api", "msg=plan", "action=skip")
	if got := kubetest.Image(e.GetDeployment("api")); got != reg+"api:sha-1" {
		t.Fatalf("held service deployed: %s", got)
	}
	if code, _, stderr := execute(t, nil, "resume", "api", "--config", cfg, "--kubeconfig", e.Kubeconfig); code != ExitOK {
		t.Fatalf("resume: exit %d: %s", code, stderr)
	}
	refl.Push("api", reg+"api:sha-3")
	receiverRequest(t, e, "api")
	w.out.WaitFor(t, 0, "trigger=policy-change", "svc=api", "outcome=deployed")
	// The action ends (metrics, its stderr line) and gives the run lock
	// back moments after its outcome line (CI saw a rollback refused in
	// between); from then on the watch is idle and holds it no more:
	// rollback takes it at once (--lock-timeout 0).
	runLock := &lock.FileLocker{Path: filepath.Join(dir, "lock")}
	kubetest.Eventually(t, 30*time.Second, "the watch gives the run lock back after its action", func(ctx context.Context) (bool, error) {
		_, held, err := runLock.Holder(ctx)
		return !held, err
	})
	code, _, stderr := execute(t, nil, "rollback", "api", "--lock-timeout", "0s", "--config", cfg, "--kubeconfig", e.Kubeconfig)
	if code != ExitOK {
		t.Fatalf("rollback while watching: exit %d: %s", code, stderr)
	}
	if got := kubetest.Image(e.GetDeployment("api")); got == reg+"api:sha-3" {
		t.Fatalf("rollback left %s", got)
	}
}

// SIGTERM mid-rollout stops the watch (exit 0) and leaves the rollout
// marked; the next pass (a run) judges it.
func TestWatchSIGTERMMidRollout(t *testing.T) {
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, watchLog)
	// The next pass judges a rollout that never becomes ready: in 5 s.
	if b, err := os.ReadFile(cfg); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), "rolloutTimeout: 60s", "rolloutTimeout: 5s", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, cfg, e.Kubeconfig)
	refl.Push("api", reg+"api:unready-2")
	receiverRequest(t, e, "api")
	w.errOut.WaitFor(t, 0, "Waiting for deployment")
	if c := w.stop(t); c != ExitOK {
		t.Fatalf("exit %d, want 0", c)
	}
	w.out.WaitFor(t, 0, "run interrupted")
	w.out.WaitFor(t, 0, `msg="watch stopped"`)
	if v := e.GetDeployment("api").Annotations[deploy.AnnVerified]; v != "false" {
		t.Fatalf("verified = %q, want the rollout left for the next pass", v)
	}
	code, stdout, stderr := execute(t, nil, "run", "--no-reconcile", "-o", "json", "--config", cfg, "--kubeconfig", e.Kubeconfig)
	var s jsonSummary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("exit %d: %v\n%s\n%s", code, err, stdout, stderr)
	}
	if s.Services[0].Action != string(deploy.Verify) {
		t.Errorf("next pass: %+v, want it to verify the interrupted rollout", s.Services[0])
	}
}

// The API server restarted under the watch: it says so once, comes back,
// and deploys the next push.
func TestWatchSurvivesAnAPIServerRestart(t *testing.T) {
	e := kubetest.Dedicated(t, "")
	rctx, rcancel := context.WithCancel(context.Background())
	t.Cleanup(rcancel)
	// The stand-in's writes fail while the API server is away, as the
	// real controller's would: logged, not a failure of the test.
	refl, err := fluxsim.Start(rctx, e.Dynamic, fluxsim.V1, e.Namespace, func(err error) { t.Logf("reflector: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, watchLog)
	w := startWatch(t, cfg, e.Kubeconfig)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.Cluster.RestartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	lost := w.out.WaitFor(t, 0, "watch: lost the API server")
	w.out.WaitFor(t, lost, "watch: back")
	// The Flux stand-in may have lost its own watch with the restart: the
	// policy's new status is written as image-reflector-controller would.
	e.SetPolicyImage(fluxsim.V1, e.Namespace, "api", reg+"api:sha-2")
	// Whichever pass comes first deploys it: the policy's event, or a
	// schedule tick that falls in the restart (CI saw the tick of
	// 14:26:00 deploy sha-2 and the policy-change pass find it up to
	// date). Both are the watch's; reacting to events at all is
	// TestWatchDeploysPushes'.
	w.out.WaitFor(t, lost, "svc=api", "outcome=deployed")
	if got := kubetest.Image(e.GetDeployment("api")); got != reg+"api:sha-2" {
		t.Fatalf("image %s after the restart, want %s", got, reg+"api:sha-2")
	}
	if n := w.out.Count("watch: lost the API server"); n != 1 {
		t.Errorf("%d lost lines for one restart, want 1:\n%s", n, w.out)
	}
}

// Two watch processes with the Lease: one acts, the other stands by, and
// takes over when the first is killed (SIGKILL: no release).
func TestWatchTwoProcessesWithTheLease(t *testing.T) {
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	cfg, dir := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"},
		watchLog+fmt.Sprintf("lock: {type: lease, leaseNamespace: %s, leaseDuration: 5s}\n", e.Namespace))
	bin := filepath.Join(dir, "autodeploy")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/autodeploy").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	start := func(id string) (*exec.Cmd, *kubetest.Lines) {
		out := kubetest.NewLines()
		cmd := exec.Command(bin, "watch", "--config", cfg, "--kubeconfig", e.Kubeconfig)
		cmd.Env = append(os.Environ(), "AUTODEPLOY_LOCK_IDENTITY="+id)
		cmd.Stdout, cmd.Stderr = out, io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, out
	}
	a, aOut := start("watch-a")
	aOut.WaitFor(t, 0, "watch: active")
	aOut.WaitFor(t, 0, "trigger=start", `msg="run finished"`)
	_, bOut := start("watch-b")
	bOut.WaitFor(t, 0, "watch: standing by", "watch-a")
	refl.Push("api", reg+"api:sha-2")
	receiverRequest(t, e, "api")
	aOut.WaitFor(t, 0, "trigger=policy-change", "outcome=deployed")
	if n := bOut.Count("msg=plan"); n != 0 {
		t.Fatalf("the standby acted:\n%s", bOut)
	}
	_ = a.Process.Signal(syscall.SIGKILL)
	_ = a.Wait()
	bOut.WaitFor(t, 0, "watch: active")
	bOut.WaitFor(t, 0, "trigger=start", `msg="run finished"`)
	refl.Push("api", reg+"api:sha-3")
	receiverRequest(t, e, "api")
	bOut.WaitFor(t, 0, "trigger=policy-change", "outcome=deployed")
	if got := kubetest.Image(e.GetDeployment("api")); got != reg+"api:sha-3" {
		t.Fatalf("image %s after the takeover", got)
	}
}
