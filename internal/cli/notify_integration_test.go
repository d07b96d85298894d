//go:build integration

package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
)

// Runs on the real cluster tell a webhook what happened (signed), survive a
// dead channel, keep secrets out of the log, and leave metrics that parse
// back and count across runs.
func TestRunNotifiesAndRecordsMetrics(t *testing.T) {
	var mu sync.Mutex
	var events []notify.Event
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Signature") != notify.Sign("hmac-SECRET-1", body) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var e notify.Event
		if err := json.Unmarshal(body, &e); err == nil {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}
	}))
	defer hook.Close()
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	metricsDir := t.TempDir()
	extra := "notify:\n" +
		"  - {type: webhook, name: audit, url: \"" + hook.URL + "/hook/URL-SECRET-2\", secret: hmac-SECRET-1}\n" +
		"  - {type: slack, name: dead, url: \"http://127.0.0.1:1/services/URL-SECRET-3\", timeout: 200ms}\n" +
		"metrics: {textfileDir: " + metricsDir + "}\n"
	cfg, dir := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, extra)

	refl.Push("api", reg+"api:sha-2")
	if code, _, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig); code != ExitOK {
		t.Fatalf("deploy run: exit %d %s", code, stderr)
	}
	refl.Push("api", reg+"api:fail-3")
	if code, _, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig); code != ExitDeployFailed {
		t.Fatalf("failing run: exit %d %s", code, stderr)
	}
	// A run with nothing to do sends nothing.
	if code, _, _ := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig); code != ExitOK {
		t.Fatalf("no-op run: exit %d", code)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 {
		t.Fatalf("events = %+v, want deployed then failed", events)
	}
	if d := events[0]; d.Kind != notify.Deployed || d.From != reg+"api:sha-1" || d.To != reg+"api:sha-2" || d.Duration <= 0 {
		t.Errorf("deployed event = %+v", d)
	}
	if f := events[1]; f.Kind != notify.Failed || f.Level != "error" || f.RolledBack == nil || !*f.RolledBack ||
		!strings.HasPrefix(f.Pod, "api-") || (f.PodReason != "ImagePullBackOff" && f.PodReason != "ErrImagePull") {
		t.Errorf("failed event = %+v", f)
	}

	log := readFile(t, filepath.Join(dir, "autodeploy.log"))
	if !strings.Contains(log, "notification not sent") || !strings.Contains(log, "channel=dead") {
		t.Errorf("the dead channel's failure is not logged:\n%s", log)
	}
	for _, secret := range []string{"hmac-SECRET-1", "URL-SECRET-2", "URL-SECRET-3"} {
		if strings.Contains(log, secret) {
			t.Errorf("log contains secret %s", secret)
		}
	}

	mfs, err := metrics.ReadPrevious(filepath.Join(metricsDir, metrics.FileName))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, m := range mfs[metrics.DeploymentsTotal].GetMetric() {
		got[m.GetLabel()[0].GetValue()+"/"+m.GetLabel()[1].GetValue()] = m.GetCounter().GetValue()
	}
	if got["rolled-back/api"]+got["api/rolled-back"] != 1 || got["deployed/api"]+got["api/deployed"] != 1 {
		t.Errorf("deployments_total = %v", got)
	}
	runs := map[string]float64{}
	for _, m := range mfs[metrics.RunsTotal].GetMetric() {
		runs[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if runs["success"] != 2 || runs["failure"] != 1 {
		t.Errorf("runs_total = %v, want 2 successes and 1 failure", runs)
	}
}
