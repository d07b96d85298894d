//go:build integration

package cli

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/status"
)

func statusJSON(t *testing.T, e *kubetest.Env, cfg string, args ...string) (ExitCode, status.Report) {
	t.Helper()
	code, stdout, stderr := execute(t, nil, append([]string{"status", "--config", cfg, "--kubeconfig", e.Kubeconfig, "-o", "json"}, args...)...)
	var r status.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("status -o json: %v\n%s\n%s", err, stdout, stderr)
	}
	return code, r
}

func setImage(t *testing.T, e *kubetest.Env, name, img string) {
	t.Helper()
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"` + name + `","image":"` + img + `"}]}}}}`)
	if _, err := e.Kube.AppsV1().Deployments(e.Namespace).Patch(context.Background(), name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// One service of each kind on the real cluster; each gets the state and
// exit code the issue asks for.
func TestStatusOnTheCluster(t *testing.T) {
	e := kubetest.New(t)
	// The stand-in answers the new ImageRepository nopolicy on its own (a
	// new generation needs no request), and may write the policy after the
	// test deleted it: a not-found there is the deletion's, as a real
	// controller would log it (seen once in CI); any other error fails.
	rctx, rcancel := context.WithCancel(context.Background())
	t.Cleanup(rcancel)
	refl, err := fluxsim.Start(rctx, e.Dynamic, fluxsim.V1, e.Namespace, func(err error) {
		if !strings.Contains(err.Error(), `"nopolicy" not found`) {
			t.Errorf("reflector: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"healthy", "rolling", "pullfail", "held", "behind", "nopolicy"}
	images := map[string]string{}
	for _, n := range names {
		images[n] = reg + n + ":sha-1"
	}
	cfg, dir := clusterConfig(t, e, refl, images, "")
	// nopolicy: delete its ImagePolicy.
	if err := e.Dynamic.Resource(fluxsim.V1.GVR("imagepolicies")).Namespace(e.Namespace).Delete(context.Background(), "nopolicy", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		settledName(t, e, n)
	}
	// A run writes the log status reads back.
	if code, _, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig, "--service", "healthy"); code != ExitOK {
		t.Fatalf("run: %d %s", code, stderr)
	}

	// Only the healthy service: exit 0.
	code, r := statusJSON(t, e, cfg, "healthy")
	if code != ExitOK || !r.Healthy || r.Services[0].State != status.StateHealthy || r.Services[0].Sync != status.SyncUpToDate {
		t.Fatalf("healthy: exit %d %+v", code, r.Services)
	}
	if r.LastRun == nil || r.LastRun.Result != "ok" || r.LastRun.Outcomes["healthy"] != "up-to-date" {
		t.Fatalf("last run from the log: %+v (%s)", r.LastRun, r.LastRunError)
	}
	if len(r.Services[0].Pods) != 1 || r.Services[0].Pods[0].Status != "Running" || r.Services[0].Pods[0].Node == "" {
		t.Errorf("pods: %+v", r.Services[0].Pods)
	}

	setImage(t, e, "rolling", reg+"rolling:unready-2")
	setImage(t, e, "pullfail", reg+"pullfail:fail-2")
	if code, _, stderr := execute(t, nil, "hold", "held", "--reason", "incident 7", "--config", cfg, "--kubeconfig", e.Kubeconfig); code != ExitOK {
		t.Fatal(stderr)
	}
	e.SetPolicyImage(fluxsim.V1, e.Namespace, "behind", reg+"behind:sha-2")
	want := map[string][2]string{
		// Set by hand past the policy: the policy's image ran and was replaced.
		"rolling":  {status.StateProgressing, status.SyncAhead},
		"pullfail": {status.StateFailed, status.SyncAhead},
		"held":     {status.StateHealthy, status.SyncUpToDate},
		"behind":   {status.StateHealthy, status.SyncBehind},
		"nopolicy": {status.StateHealthy, status.SyncUnknown},
	}
	// Wait for KWOK to reach ImagePullBackOff, and for the controller to
	// observe the hold's annotation (Deployments count annotation changes
	// as a new generation).
	kubetest.Eventually(t, 30*time.Second, "the cluster to settle", func(ctx context.Context) (bool, error) {
		_, r := statusJSON(t, e, cfg, "pullfail", "rolling", "held")
		pulling := false
		for _, p := range r.Services[0].Pods {
			pulling = pulling || p.Status == "ImagePullBackOff"
		}
		return pulling && r.Services[1].State == status.StateProgressing && r.Services[2].State == status.StateHealthy, nil
	})
	for n, w := range want {
		code, r := statusJSON(t, e, cfg, n)
		s := r.Services[0]
		if code != ExitDegraded || r.Healthy {
			t.Errorf("%s: exit %d, healthy %v; want %d", n, code, r.Healthy, ExitDegraded)
		}
		if got := [2]string{s.State, s.Sync}; got != w {
			t.Errorf("%s: state/sync %v, want %v (%+v)", n, got, w, s)
		}
		switch n {
		case "pullfail":
			found := false
			for _, p := range s.Pods {
				found = found || (p.ReplicaSet == "current" && (p.Status == "ImagePullBackOff" || p.Status == "ErrImagePull"))
			}
			if !found {
				t.Errorf("pullfail pods: %+v", s.Pods)
			}
		case "held":
			if s.Hold == nil || s.Hold.Reason != "incident 7" {
				t.Errorf("held: %+v", s.Hold)
			}
		case "nopolicy":
			if len(s.Problems) == 0 || !strings.Contains(s.Problems[0], "ImagePolicy "+e.Namespace+"/nopolicy not found") {
				t.Errorf("nopolicy problems: %v", s.Problems)
			}
		case "behind":
			if s.NextRun == nil || s.NextRun.Action != "deploy" || s.NextRun.Target != reg+"behind:sha-2" {
				t.Errorf("behind next run: %+v", s.NextRun)
			}
		}
	}

	// The human output, on the same state.
	code, stdout, _ := execute(t, nil, "status", "--config", cfg, "--kubeconfig", e.Kubeconfig, "--log-lines", "3")
	if code != ExitDegraded {
		t.Fatalf("status: exit %d", code)
	}
	for _, part := range []string{"SERVICE", "pullfail", "ImagePullBackOff", "held       by ", "incident 7", "last run", "next run", "Log (last 3 lines)", `msg="run finished"`} {
		if !strings.Contains(stdout, part) {
			t.Errorf("status output lacks %q:\n%s", part, stdout)
		}
	}

	// After a rotation the last run is read from the (gzipped) backup.
	logPath := filepath.Join(dir, "autodeploy.log")
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	gzPath := filepath.Join(dir, "autodeploy-2026-11-25T10-00-00.000.log.gz")
	f, err := os.Create(gzPath)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write(raw)
	zw.Close()
	f.Close()
	if err := os.WriteFile(logPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, r = statusJSON(t, e, cfg, "healthy")
	if r.LastRun == nil || r.LastRun.Outcomes["healthy"] != "up-to-date" {
		t.Fatalf("last run after rotation: %+v (%s)", r.LastRun, r.LastRunError)
	}
}

func settledName(t *testing.T, e *kubetest.Env, name string) {
	t.Helper()
	kubetest.Eventually(t, 30*time.Second, name+" available", func(ctx context.Context) (bool, error) {
		d, err := e.Kube.AppsV1().Deployments(e.Namespace).Get(ctx, name, metav1.GetOptions{})
		return err == nil && d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == 1 && d.Status.UpdatedReplicas == 1, err
	})
}

func TestHistory(t *testing.T) {
	e, refl, cfg, _ := twoDeploys(t)
	refl.Push("api", reg+"api:fail-4")
	if code, _, _ := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig); code != ExitDeployFailed {
		t.Fatalf("failing run: exit %d", code)
	}
	code, stdout, stderr := execute(t, nil, "history", "api", "--config", cfg, "--kubeconfig", e.Kubeconfig, "-o", "json")
	if code != ExitOK {
		t.Fatalf("history: exit %d %s", code, stderr)
	}
	var revs []Revision
	if err := json.Unmarshal([]byte(stdout), &revs); err != nil {
		t.Fatal(err)
	}
	// sha-1 (1), sha-2 (2), fail-4 (4), then sha-3 rolled back to (now 5).
	got := map[string]Revision{}
	for _, r := range revs {
		got[r.Image[strings.LastIndex(r.Image, ":")+1:]] = r
	}
	if len(revs) != 4 || !got["sha-3"].Current || got["sha-3"].Revision != 5 || !got["fail-4"].Failed || got["fail-4"].Current || got["sha-1"].Revision != 1 {
		t.Fatalf("history = %+v", revs)
	}
	if !strings.Contains(got["sha-2"].ChangeCause, "sha-1 -> "+reg+"api:sha-2") {
		t.Errorf("change-cause = %q", got["sha-2"].ChangeCause)
	}
	code, stdout, _ = execute(t, nil, "history", "api", "--config", cfg, "--kubeconfig", e.Kubeconfig)
	if code != ExitOK || !strings.Contains(stdout, "5 (current)") || !strings.Contains(stdout, "fail-4 (failed)") {
		t.Fatalf("history table:\n%s", stdout)
	}
}

// status works while a run holds the lock, and shows it; -w redraws until
// Ctrl-C, which ends it with exit 0.
func TestStatusDuringRunAndWatch(t *testing.T) {
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	cfg, dir := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "")
	settledName(t, e, "api")
	lk, err := lock.TryAcquire(filepath.Join(dir, "lock"), "autodeploy run 20261126T000000-test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release()
	_, r := statusJSON(t, e, cfg)
	if r.RunInProgress == nil || r.RunInProgress.Pid != os.Getpid() || !strings.Contains(r.RunInProgress.Command, "20261126T000000-test") {
		t.Fatalf("runInProgress = %+v", r.RunInProgress)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	frames := 0
	var out strings.Builder
	f := NewFactory(IOStreams{In: strings.NewReader(""), Out: writerFunc(func(b []byte) {
		out.Write(b)
		if strings.Contains(string(b), "Ctrl-C to stop") {
			if frames++; frames == 2 {
				cancel()
			}
		}
	}), ErrOut: &strings.Builder{}, OutTTY: true}, func(string) string { return "" })
	code := Execute(ctx, f, []string{"status", "-w", "--interval", "1s", "--color", "never", "--config", cfg, "--kubeconfig", e.Kubeconfig})
	if code != ExitOK || frames != 2 || strings.Count(out.String(), "\033[H\033[2J") != 2 || !strings.Contains(out.String(), "running    pid") {
		t.Fatalf("watch: exit %d, %d frames:\n%s", code, frames, out.String())
	}
}

type writerFunc func([]byte)

func (w writerFunc) Write(b []byte) (int, error) {
	w(b)
	return len(b), nil
}

// A failing scan (the registry down: the ImageRepository Ready=False, as
// image-reflector-controller writes it) makes status unhealthy, exit 8, with
// the controller's message.
func TestStatusFailingScan(t *testing.T) {
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "")
	settledName(t, e, "api")
	if code, out, _ := execute(t, nil, "status", "--config", cfg, "--kubeconfig", e.Kubeconfig); code != ExitOK {
		t.Fatalf("before: exit %d\n%s", code, out)
	}
	msg := `scan failed: Get "https://ghcr.io/v2/": dial tcp 140.82.121.34:443: connect: connection refused`
	patch := fmt.Sprintf(`{"status":{"conditions":[{"type":"Ready","status":"False","reason":"ReadOperationFailed","message":%q,"lastTransitionTime":"2026-11-26T00:00:00Z","observedGeneration":1}]}}`, msg)
	if _, err := e.Dynamic.Resource(fluxsim.V1.GVR("imagerepositories")).Namespace(e.Namespace).Patch(context.Background(), "api", types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	code, out, _ := execute(t, nil, "status", "--config", cfg, "--kubeconfig", e.Kubeconfig)
	if code != ExitDegraded || !strings.Contains(strings.Join(strings.Fields(out), " "), "ImageRepository "+e.Namespace+"/api is not Ready: scan failed") {
		t.Fatalf("exit %d, want 8 naming the failing scan:\n%s", code, out)
	}
}
