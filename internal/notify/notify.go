// Package notify tells people what autodeploy did: Slack and Discord
// webhooks, and a generic JSON webhook signed like Flux's generic-hmac
// provider. Sending never breaks or stalls a run: each message gets a short
// timeout and one retry, and failures are only logged, without the URL or
// secret, which are secrets.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// Kinds of events.
const (
	Deployed = "deployed"
	Failed   = "failed"
	Rollback = "rollback" // manual
	Hold     = "hold"
	Resume   = "resume"
	// HoldExpired: a hold with an end (hold --for, --until) was released
	// by the run after it; By is who had placed it.
	HoldExpired = "hold-expired"
	// Problem: a run found something a person must fix (a failed image
	// running, a deploy Flux reverted); sent once per problem.
	Problem = "problem"
	// Superseded: someone else (a person, Flux) changed the Deployment
	// during autodeploy's rollout; their change stands.
	Superseded = "superseded"
	// Unverified: the rollout could not be judged (the run's budget ran
	// out, the API could not be read, a person paused it); the next run
	// verifies it.
	Unverified = "unverified"
	// Forget: every record autodeploy kept for a service was removed
	// (autodeploy forget).
	Forget = "forget"
	// Promoted: a promoted service (config promote) was deployed with its
	// source's image and verified; Source is whence, By and Reason who and
	// why for `autodeploy promote`.
	Promoted = "promoted"
	// SoakPassed: a verified rollout's soak ended with nothing against
	// the image (a promotion from it may follow).
	SoakPassed = "soak-passed"
	// SoakFailed: a crash, a pod leaving Ready or a failing health check
	// during the soak; RolledBack says how the rollback went.
	SoakFailed = "soak-failed"
	// OutsideWindow: a deploy was not started because no deploy window is
	// open long enough for it; sent once per image held back.
	OutsideWindow = "outside-window"
)

// Kinds lists every kind of event.
var Kinds = []string{Deployed, Failed, Rollback, Hold, Resume, HoldExpired, Problem, Superseded, Unverified, Forget, Promoted, SoakPassed, SoakFailed, OutsideWindow}

// Event is one thing worth telling. Its JSON form is the generic webhook's
// body.
type Event struct {
	Kind    string    `json:"kind"`
	Level   string    `json:"level"` // info, warning, error
	Service string    `json:"service"`
	Time    time.Time `json:"time"`
	RunID   string    `json:"runId,omitempty"`
	From    string    `json:"from,omitempty"` // image before
	To      string    `json:"to,omitempty"`   // image after
	// Duration of the rollout, health check included.
	Duration time.Duration `json:"durationNanos,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	// Pod and PodReason name the pod that failed, when one did.
	Pod       string `json:"pod,omitempty"`
	PodReason string `json:"podReason,omitempty"`
	// RolledBack says whether the automatic rollback of a failure worked.
	RolledBack *bool  `json:"rolledBack,omitempty"`
	By         string `json:"by,omitempty"` // user@host of a manual action
	// Source is the service a promoted one took its image from.
	Source  string `json:"source,omitempty"`
	Cluster string `json:"cluster,omitempty"`
}

// Summary is the one-line text of e, used as Slack's fallback text and in
// logs.
func (e Event) Summary() string {
	switch e.Kind {
	case Deployed:
		return fmt.Sprintf("%s deployed %s (was %s) in %s", e.Service, e.To, e.From, e.Duration.Round(100*time.Millisecond))
	case Failed:
		return fmt.Sprintf("%s failed to deploy %s: %s; %s", e.Service, e.To, e.Reason, rollbackText(e))
	case Rollback:
		return fmt.Sprintf("%s rolled back by %s from %s to %s: %s", e.Service, e.By, e.From, e.To, e.Reason)
	case Hold:
		return fmt.Sprintf("%s held by %s: %s", e.Service, e.By, e.Reason)
	case Resume:
		return fmt.Sprintf("%s resumed by %s", e.Service, e.By)
	case HoldExpired:
		return fmt.Sprintf("%s: the hold by %s expired, runs deploy it again: %s", e.Service, e.By, e.Reason)
	case Forget:
		return fmt.Sprintf("%s forgotten by %s: %s", e.Service, e.By, e.Reason)
	case Problem:
		return fmt.Sprintf("%s needs a person: %s", e.Service, e.Reason)
	case Superseded:
		return fmt.Sprintf("%s: the rollout of %s was superseded, their change stands: %s", e.Service, e.To, e.Reason)
	case Unverified:
		return fmt.Sprintf("%s: %s left unverified, the next run verifies it: %s", e.Service, e.To, e.Reason)
	case Promoted:
		return fmt.Sprintf("%s promoted from %s: %s (was %s) in %s", e.Service, e.Source, e.To, e.From, e.Duration.Round(100*time.Millisecond))
	case SoakPassed:
		return fmt.Sprintf("%s: %s soaked, nothing against it", e.Service, e.To)
	case SoakFailed:
		return fmt.Sprintf("%s: %s failed its soak: %s; %s", e.Service, e.To, e.Reason, rollbackText(e))
	case OutsideWindow:
		return fmt.Sprintf("%s: %s waits: %s", e.Service, e.To, e.Reason)
	}
	return e.Service + ": " + e.Kind
}

// rollbackText says how the rollback of a failure went.
func rollbackText(e Event) string {
	switch {
	case e.RolledBack == nil:
		return "left as it is (no automatic rollback)"
	case *e.RolledBack:
		return "rolled back to " + e.From
	}
	return "ROLLBACK FAILED: someone must look"
}

// Sender delivers events to the configured channels.
type Sender struct {
	Channels []config.Notify
	Log      *slog.Logger
	Client   *http.Client
	Getenv   func(string) string
	ReadFile func(string) ([]byte, error)
	// RetryDelay is the pause before the one retry.
	RetryDelay time.Duration
}

// New returns a Sender for cfg's channels; nil when there are none.
func New(channels []config.Notify, log *slog.Logger) *Sender {
	if len(channels) == 0 {
		return nil
	}
	return &Sender{Channels: channels, Log: log, Client: &http.Client{}, Getenv: os.Getenv, ReadFile: config.ReadFile, RetryDelay: time.Second}
}

// Send delivers e to every channel whose minimum level it reaches. It
// returns nothing: a notification that cannot be sent is logged, never a
// reason to fail or delay a deployment beyond its timeouts. A nil Sender
// sends nothing.
func (s *Sender) Send(ctx context.Context, e Event) {
	if s == nil {
		return
	}
	for _, ch := range s.Channels {
		if slices.Index(config.Levels, e.Level) < slices.Index(config.Levels, ch.MinLevel) {
			continue
		}
		if err := s.deliver(ctx, ch, e); err != nil {
			s.Log.Warn("notification not sent", "channel", ch.Name, "event", e.Kind, "svc", e.Service, "error", err.Error())
		} else {
			s.Log.Info("notification sent", "channel", ch.Name, "event", e.Kind, "svc", e.Service)
		}
	}
}

// Preflight reads the channel's URL and webhook secret from the
// environment or files, as each send does: config validate warns and
// doctor fails when this environment cannot (they said nothing, and runs
// lost every notification; issue 18, sixth pass). The error names the
// variable or file, never what it holds.
func Preflight(ch config.Notify) error {
	if _, err := channelURL(ch, os.Getenv, config.ReadFile); err != nil {
		return err
	}
	if ch.Type == config.NotifyWebhook && ch.HMAC.Set() {
		if _, err := ch.HMAC.Resolve(os.Getenv, config.ReadFile); err != nil {
			return fmt.Errorf("secret: %w", err)
		}
	}
	return nil
}

// channelURL is the channel's URL, read where the config says.
func channelURL(ch config.Notify, getenv func(string) string, readFile func(string) ([]byte, error)) (string, error) {
	u, err := ch.URL.Resolve(getenv, readFile)
	if err != nil {
		return "", fmt.Errorf("URL: %w", err)
	}
	if ch.URL.Value == "" && !config.IsHTTPURL(u) {
		// Checked by Load when inline; from elsewhere, here (Go said
		// 'unsupported protocol scheme ""'). Never echoed: what is there
		// instead is most likely the token itself.
		return "", fmt.Errorf("URL from %s: what it holds %s (not shown: it may be a secret)", ch.URL, config.NotHTTP)
	}
	return u, nil
}

func (s *Sender) deliver(ctx context.Context, ch config.Notify, e Event) error {
	u, err := channelURL(ch, s.Getenv, s.ReadFile)
	if err != nil {
		return err
	}
	var body []byte
	switch ch.Type {
	case config.NotifySlack:
		body, err = slackPayload(e)
	case config.NotifyDiscord:
		body, err = discordPayload(e)
	default:
		body, err = webhookPayload(e)
	}
	if err != nil {
		return err
	}
	header := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"autodeploy"}}
	if ch.Type == config.NotifyWebhook && ch.HMAC.Set() {
		key, err := ch.HMAC.Resolve(s.Getenv, s.ReadFile)
		if err != nil {
			return fmt.Errorf("secret: %w", err)
		}
		header.Set("X-Signature", Sign(key, body))
	}
	err = s.post(ctx, ch, u, header, body)
	if err == nil || ctx.Err() != nil {
		return err
	}
	t := time.NewTimer(s.RetryDelay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return err
	case <-t.C:
	}
	if err2 := s.post(ctx, ch, u, header, body); err2 != nil {
		return fmt.Errorf("%v; retry: %v", err, err2)
	}
	return nil
}

func (s *Sender) post(ctx context.Context, ch config.Notify, u string, header http.Header, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, ch.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return errors.New("invalid URL") // the URL is a secret: do not echo it
	}
	req.Header = header
	resp, err := s.Client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // drop "Post \"<url>\":", which holds the secret
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// Sign is the X-Signature value of body: "sha256=" and the hex HMAC-SHA256
// with key, the format of Flux's generic-hmac provider.
func Sign(key string, body []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
