package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
)

// receiver records what a fake Slack/Discord/webhook endpoint received.
type receiver struct {
	mu     sync.Mutex
	bodies [][]byte
	heads  []http.Header
	status int           // answer with this status (default 200)
	delay  time.Duration // answer after this long
	srv    *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{status: http.StatusOK}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, body)
		r.heads = append(r.heads, req.Header.Clone())
		status, delay := r.status, r.delay
		r.mu.Unlock()
		select {
		case <-time.After(delay):
		case <-req.Context().Done():
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func sender(log io.Writer, chans ...config.Notify) *Sender {
	s := New(chans, runlog.New(log))
	s.RetryDelay = 10 * time.Millisecond
	s.Getenv = func(k string) string { return map[string]string{"HOOK_URL": envURL, "HMAC_KEY": "s3cr3t-key"}[k] }
	return s
}

var envURL string

func rolledBack(b bool) *bool { return &b }

var failedEvent = Event{Kind: Failed, Level: "error", Service: "api-gateway", Time: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
	From: "ghcr.io/x/api:sha-1", To: "ghcr.io/x/api:fail-2", Reason: "pod api-1: container api is in ImagePullBackOff",
	Pod: "api-1", PodReason: "ImagePullBackOff", RolledBack: rolledBack(true), RunID: "r1"}

func TestPayloads(t *testing.T) {
	slack, discord, hook := newReceiver(t), newReceiver(t), newReceiver(t)
	var log bytes.Buffer
	s := sender(&log,
		config.Notify{Type: config.NotifySlack, Name: "slack", URL: config.Secret{Value: slack.srv.URL + "/services/T0/B0/XSECRETX"}, MinLevel: "info", Timeout: time.Second},
		config.Notify{Type: config.NotifyDiscord, Name: "discord", URL: config.Secret{Value: discord.srv.URL + "/api/webhooks/1/DSECRET"}, MinLevel: "info", Timeout: time.Second},
		config.Notify{Type: config.NotifyWebhook, Name: "hook", URL: config.Secret{Value: hook.srv.URL}, HMAC: config.Secret{Env: "HMAC_KEY"}, MinLevel: "info", Timeout: time.Second},
	)
	s.Send(context.Background(), failedEvent)

	var sl struct {
		Text        string `json:"text"`
		Attachments []struct {
			Color  string           `json:"color"`
			Blocks []map[string]any `json:"blocks"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(slack.bodies[0], &sl); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sl.Text, "api-gateway failed to deploy ghcr.io/x/api:fail-2") || !strings.Contains(sl.Text, "rolled back") ||
		len(sl.Attachments) != 1 || sl.Attachments[0].Color != colourBad || len(sl.Attachments[0].Blocks) < 2 {
		t.Errorf("slack payload: %s", slack.bodies[0])
	}
	if !bytes.Contains(slack.bodies[0], []byte("api-1 (ImagePullBackOff)")) {
		t.Errorf("slack payload lacks the failing pod: %s", slack.bodies[0])
	}

	var dc struct {
		Username string `json:"username"`
		Embeds   []struct {
			Title  string `json:"title"`
			Color  int    `json:"color"`
			Fields []struct {
				Name, Value string
			} `json:"fields"`
			Timestamp string `json:"timestamp"`
		} `json:"embeds"`
	}
	if err := json.Unmarshal(discord.bodies[0], &dc); err != nil {
		t.Fatal(err)
	}
	if len(dc.Embeds) != 1 || dc.Embeds[0].Color != 0xa30200 || !strings.Contains(dc.Embeds[0].Title, "deploy failed") || dc.Embeds[0].Timestamp != "2026-11-25T10:00:00Z" || len(dc.Embeds[0].Fields) < 4 {
		t.Errorf("discord payload: %s", discord.bodies[0])
	}

	// The generic webhook: the event as JSON, signed.
	sig := hook.heads[0].Get("X-Signature")
	if !hmac.Equal([]byte(sig), []byte(Sign("s3cr3t-key", hook.bodies[0]))) || !strings.HasPrefix(sig, "sha256=") {
		t.Errorf("signature %q does not verify", sig)
	}
	var ev Event
	if err := json.Unmarshal(hook.bodies[0], &ev); err != nil || ev.Kind != Failed || ev.Pod != "api-1" || ev.RolledBack == nil || !*ev.RolledBack {
		t.Errorf("webhook body: %s (%v)", hook.bodies[0], err)
	}
	for _, secret := range []string{"XSECRETX", "DSECRET", "s3cr3t-key"} {
		if strings.Contains(log.String(), secret) {
			t.Errorf("log contains secret %q:\n%s", secret, log.String())
		}
	}
}

func TestMinLevel(t *testing.T) {
	r := newReceiver(t)
	s := sender(io.Discard, config.Notify{Type: config.NotifyWebhook, Name: "x", URL: config.Secret{Value: r.srv.URL}, MinLevel: "warning", Timeout: time.Second})
	s.Send(context.Background(), Event{Kind: Deployed, Level: "info", Service: "a"})
	s.Send(context.Background(), Event{Kind: Hold, Level: "warning", Service: "a"})
	s.Send(context.Background(), failedEvent)
	if r.count() != 2 {
		t.Fatalf("received %d messages, want 2 (warning and error only)", r.count())
	}
}

// A failing or hanging endpoint costs at most two timeouts, is retried once,
// is logged without its URL, and is never an error for the caller.
func TestFailuresAreBoundedAndLogged(t *testing.T) {
	down, slow := newReceiver(t), newReceiver(t)
	down.status = http.StatusInternalServerError
	slow.delay = 10 * time.Second
	var log bytes.Buffer
	envURL = slow.srv.URL + "/hook/SLOWSECRET"
	s := sender(&log,
		config.Notify{Type: config.NotifySlack, Name: "down", URL: config.Secret{Value: down.srv.URL + "/services/DOWNSECRET"}, MinLevel: "info", Timeout: time.Second},
		config.Notify{Type: config.NotifyWebhook, Name: "slow", URL: config.Secret{Env: "HOOK_URL"}, MinLevel: "info", Timeout: 100 * time.Millisecond},
		config.Notify{Type: config.NotifyWebhook, Name: "unset", URL: config.Secret{Env: "NOT_SET"}, MinLevel: "info", Timeout: time.Second},
	)
	start := time.Now()
	s.Send(context.Background(), failedEvent)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Send took %s with a hanging endpoint", took)
	}
	if down.count() != 2 || slow.count() != 2 {
		t.Errorf("attempts: down %d, slow %d; want 2 each (one retry)", down.count(), slow.count())
	}
	out := log.String()
	for _, want := range []string{`channel=down`, `HTTP 500`, `channel=slow`, `deadline exceeded`, `channel=unset`, `NOT_SET is empty or unset`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"DOWNSECRET", "SLOWSECRET", "127.0.0.1"} {
		if strings.Contains(out, secret) {
			t.Errorf("log leaks %q:\n%s", secret, out)
		}
	}
}

func TestNilSenderSendsNothing(t *testing.T) {
	var s *Sender
	s.Send(context.Background(), failedEvent) // must not panic
	if New(nil, nil) != nil {
		t.Fatal("New without channels is not nil")
	}
}

// Every kind of event has its own summary and title: the fallback
// ("svc: kind") would tell a person nothing.
func TestEveryKindHasItsText(t *testing.T) {
	for _, k := range Kinds {
		e := Event{Kind: k, Level: "warning", Service: "api", To: "ghcr.io/x/api:sha-2", From: "ghcr.io/x/api:sha-1", Reason: "why", By: "alice@host"}
		if s := e.Summary(); s == "api: "+k || !strings.HasPrefix(s, "api") {
			t.Errorf("%s: summary %q", k, s)
		}
		if ti := title(e); ti == "api: "+k || !strings.Contains(ti, "api") {
			t.Errorf("%s: title %q", k, ti)
		}
	}
}

// A URL from the environment or a file that is no URL (the bare token, a
// typo) was logged as Go's 'unsupported protocol scheme ""', naming
// neither the variable nor the fix: the line says where it was read and
// what is wrong, never what it holds (issue 18, sixth pass).
func TestURLFromElsewhereThatIsNoURL(t *testing.T) {
	var log bytes.Buffer
	envURL = "xoxb-ENVSECRET-1"
	defer func() { envURL = "" }()
	s := sender(&log, config.Notify{Type: config.NotifySlack, Name: "s1", URL: config.Secret{Env: "HOOK_URL"}, MinLevel: "info", Timeout: time.Second})
	s.Send(context.Background(), failedEvent)
	out := log.String()
	if want := `URL from $HOOK_URL: what it holds is not an absolute http or https URL (not shown: it may be a secret)`; !strings.Contains(out, want) {
		t.Errorf("log lacks %q:\n%s", want, out)
	}
	if strings.Contains(out, "ENVSECRET") {
		t.Errorf("log leaks the value:\n%s", out)
	}
}
