package deploy

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// TestRunDeployWindows drives Run on the fake cluster at fcNow (Wednesday
// 2026-12-02 10:00 UTC) with a window that is closed then (Saturdays).
func TestRunDeployWindows(t *testing.T) {
	closed := config.DeployWindow{Cron: "0 9 * * 6", Duration: 8 * time.Hour, TimeZone: "Europe/Paris"}
	open := config.DeployWindow{Cron: "0 9 * * 3", Duration: 8 * time.Hour, TimeZone: "UTC"}
	tests := []struct {
		name      string
		window    config.DeployWindow
		ignore    bool
		unverifed bool // the Deployment runs bbb, left unverified by an earlier run
		outcome   Outcome
		applied   []string
		logHas    string
	}{
		{name: "closed: skipped and nothing applied", window: closed, outcome: OutcomeSkipped, logHas: "outside its deploy window, next opens Sat 09:00 Europe/Paris"},
		{name: "open: deployed", window: open, outcome: OutcomeDeployed, applied: []string{bbb}},
		{name: "closed with --ignore-windows: deployed and logged", window: closed, ignore: true, outcome: OutcomeDeployed, applied: []string{bbb}, logHas: "deploy windows ignored (--ignore-windows)"},
		{name: "closed: an unverified rollout is still verified", window: closed, unverifed: true, outcome: OutcomeVerified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeCluster(t, aaa, bbb, false)
			if tt.unverifed {
				c.seed(bbb, behaviour{}, map[string]string{AnnVerified: "false", AnnDeployedImage: bbb})
			}
			s := svc()
			s.DeployWindows = []config.DeployWindow{tt.window}
			var log bytes.Buffer
			res, err := c.runner(s, nil, &log).Run(t.Context(), "test", Options{NoReconcile: true, IgnoreWindows: tt.ignore})
			if err != nil || len(res.Services) != 1 {
				t.Fatalf("Run: %v, %+v", err, res)
			}
			if sr := res.Services[0]; sr.Outcome != tt.outcome || sr.Problem {
				t.Errorf("outcome %s (problem %v, reason %q), want %s", sr.Outcome, sr.Problem, sr.Reason, tt.outcome)
			}
			if got := c.appliedImages(); strings.Join(got, ",") != strings.Join(tt.applied, ",") {
				t.Errorf("rolled out %q, want %q", got, tt.applied)
			}
			if !strings.Contains(log.String(), tt.logHas) {
				t.Errorf("log does not say %q:\n%s", tt.logHas, log.String())
			}
		})
	}
}

// TestRunReleasesExpiredHold: a hold whose end (hold --until) has passed
// at the run's clock (fcNow) is removed by the run, which then deploys; one
// still in force is left and the service skipped.
func TestRunReleasesExpiredHold(t *testing.T) {
	tests := []struct {
		name    string
		until   time.Time
		outcome Outcome
		applied []string
		held    bool
		logHas  string
	}{
		{name: "expired: released and deployed", until: fcNow.Add(-time.Minute), outcome: OutcomeDeployed, applied: []string{bbb}, logHas: "hold expired"},
		{name: "in force: skipped and kept", until: fcNow.Add(time.Hour), outcome: OutcomeSkipped, held: true, logHas: "until 2026-12-02 11:00 UTC (in 1h)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeCluster(t, aaa, bbb, false)
			h := mustJSON(Hold{By: "alice@host", Reason: "freeze", At: fcNow.Add(-2 * time.Hour), Until: tt.until})
			c.seed(aaa, behaviour{}, map[string]string{AnnHold: h})
			var log bytes.Buffer
			res, err := c.runner(svc(), nil, &log).Run(t.Context(), "test", Options{NoReconcile: true})
			if err != nil || len(res.Services) != 1 {
				t.Fatalf("Run: %v, %+v", err, res)
			}
			if sr := res.Services[0]; sr.Outcome != tt.outcome {
				t.Errorf("outcome %s (reason %q), want %s", sr.Outcome, sr.Reason, tt.outcome)
			}
			if got := c.appliedImages(); strings.Join(got, ",") != strings.Join(tt.applied, ",") {
				t.Errorf("rolled out %q, want %q", got, tt.applied)
			}
			if _, held := ParseHold(c.deployment().Annotations); held != tt.held {
				t.Errorf("held afterwards: %v, want %v (%q)", held, tt.held, c.deployment().Annotations[AnnHold])
			}
			if !strings.Contains(log.String(), tt.logHas) {
				t.Errorf("log does not say %q:\n%s", tt.logHas, log.String())
			}
		})
	}
}
