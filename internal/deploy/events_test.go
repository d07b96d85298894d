package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
)

// TestEventOf: the event of each outcome (issue 19: promoted, soak passed,
// soak failed, beside deployed and failed).
func TestEventOf(t *testing.T) {
	yes, no := true, false
	deployed := func(mut func(*ServiceResult)) ServiceResult {
		sr := ServiceResult{Decision: Decision{Service: "api", Action: Deploy, Current: aaa, Target: bbb, Reason: "the policy selected a new image"}, Outcome: OutcomeDeployed, Duration: time.Second}
		if mut != nil {
			mut(&sr)
		}
		return sr
	}
	tests := []struct {
		name       string
		sr         ServiceResult
		by         string
		kind       string // "" for no event
		from       string
		source, bi string
		rolledBack *bool
		reason     string // when set, the event's
	}{
		{name: "deployed", sr: deployed(nil), kind: notify.Deployed, from: aaa},
		{name: "promoted", sr: deployed(func(sr *ServiceResult) {
			sr.PromotedFrom, sr.Reason = "staging", "promoted from staging, where it was verified"
		}),
			kind: notify.Promoted, from: aaa, source: "staging"},
		{name: "promoted by a person", sr: deployed(func(sr *ServiceResult) { sr.PromotedFrom = "staging" }), by: "alice@host",
			kind: notify.Promoted, from: aaa, source: "staging", bi: "alice@host"},
		{name: "an earlier run's rollout verified", sr: deployed(func(sr *ServiceResult) { sr.Action, sr.Outcome = Verify, OutcomeVerified }), kind: notify.Deployed},
		{name: "deployed and soaked in the same run", sr: deployed(func(sr *ServiceResult) { sr.Soak = SoakPassed }), kind: notify.SoakPassed},
		{name: "an earlier run's soak passed", sr: deployed(func(sr *ServiceResult) { sr.Action, sr.Outcome, sr.Soak = Soak, OutcomeSoaked, SoakPassed }), kind: notify.SoakPassed},
		{name: "still soaking", sr: deployed(func(sr *ServiceResult) { sr.Action, sr.Outcome = Soak, OutcomeSoaking })},
		{name: "the rollout failed, rolled back", sr: deployed(func(sr *ServiceResult) { sr.Outcome = OutcomeRolledBack }), kind: notify.Failed, from: aaa, rolledBack: &yes},
		{name: "the soak failed, rolled back", sr: deployed(func(sr *ServiceResult) {
			sr.Outcome, sr.Soak, sr.Error = OutcomeRolledBack, SoakFailed, "soak failed: the health check failed (the image): 500"
		}), kind: notify.SoakFailed, from: aaa, rolledBack: &yes, reason: "the health check failed (the image): 500"},
		{name: "the soak failed, the rollback too", sr: deployed(func(sr *ServiceResult) { sr.Outcome, sr.Soak = OutcomeRollbackFailed, SoakFailed }), kind: notify.SoakFailed, from: aaa, rolledBack: &no},
		{name: "the soak failed, no auto-rollback", sr: deployed(func(sr *ServiceResult) { sr.Outcome, sr.Soak = OutcomeFailed, SoakFailed }), kind: notify.SoakFailed, from: aaa},
		{name: "skipped", sr: deployed(func(sr *ServiceResult) { sr.Action, sr.Outcome = Skip, OutcomeSkipped })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := eventOf(tt.sr, errors.New("x"), tt.by)
			if !ok {
				if tt.kind != "" {
					t.Fatalf("no event, want %s", tt.kind)
				}
				return
			}
			if e.Kind != tt.kind || e.From != tt.from || e.Source != tt.source || e.By != tt.bi || e.To != bbb {
				t.Errorf("event %+v; want kind %q from %q source %q by %q to %q", e, tt.kind, tt.from, tt.source, tt.bi, bbb)
			}
			if tt.reason != "" && e.Reason != tt.reason {
				t.Errorf("reason %q, want %q", e.Reason, tt.reason)
			}
			if (e.RolledBack == nil) != (tt.rolledBack == nil) || (e.RolledBack != nil && *e.RolledBack != *tt.rolledBack) {
				t.Errorf("rolledBack %v, want %v", e.RolledBack, tt.rolledBack)
			}
		})
	}
}

// capture is a Sender whose webhook is a function: the events a run sends,
// without a network.
type capture struct {
	mu  sync.Mutex
	got []notify.Event
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (c *capture) sender(t *testing.T) *notify.Sender {
	return &notify.Sender{
		Channels: []config.Notify{{Type: config.NotifyWebhook, Name: "test", URL: config.Secret{Value: "http://hook.test/x"}, MinLevel: "info", Timeout: time.Second}},
		Log:      runlog.New(io.Discard), Getenv: os.Getenv, ReadFile: config.ReadFile,
		Client: &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
			var e notify.Event
			if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
				t.Errorf("webhook body: %v", err)
			}
			c.mu.Lock()
			c.got = append(c.got, e)
			c.mu.Unlock()
			return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(bytes.NewReader(nil)), Request: r}, nil
		})},
	}
}

// events is what the webhook received so far.
func (c *capture) events() []notify.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// A deploy a window holds back is told once (notify.OutsideWindow, at
// info), not at every run until the window opens, and is not a problem.
func TestOutsideWindowToldOnce(t *testing.T) {
	c := newFakeCluster(t, aaa, bbb, false)
	s := svc()
	s.DeployWindows = []config.DeployWindow{{Cron: "0 9 * * 6", Duration: 8 * time.Hour, TimeZone: "Europe/Paris"}}
	var ev capture
	var log bytes.Buffer
	r := c.runner(s, nil, &log)
	r.Notify = ev.sender(t)
	for i := range 2 {
		res, err := r.Run(t.Context(), "test", Options{NoReconcile: true})
		if err != nil || len(res.Services) != 1 {
			t.Fatalf("run %d: %v, %+v", i, err, res)
		}
		if sr := res.Services[0]; sr.Outcome != OutcomeSkipped || !sr.OutsideWindow || sr.Problem || sr.NewProblem {
			t.Errorf("run %d: %+v", i, sr)
		}
	}
	got := ev.events()
	if len(got) != 1 || got[0].Kind != notify.OutsideWindow {
		t.Fatalf("events %+v, want one %s\n%s", got, notify.OutsideWindow, log.String())
	}
	if e := got[0]; e.Level != "info" || e.To != bbb || e.From != aaa || e.Reason == "" {
		t.Errorf("event %+v", e)
	}
}
