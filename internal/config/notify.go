package config

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Notification channel types.
const (
	NotifySlack   = "slack"
	NotifyDiscord = "discord"
	NotifyWebhook = "webhook" // generic JSON, optionally HMAC-signed
)

// Levels of notification events, lowest first.
var Levels = []string{"info", "warning", "error"}

// DefaultNotifyTimeout bounds one attempt to deliver a message: a slow chat
// service must not hold up a run.
const DefaultNotifyTimeout = 5 * time.Second

// Notify is one notification channel. The URL and the secret are secrets:
// they are given in the file, or named as an environment variable or a
// file to read, and never printed.
type Notify struct {
	Type string
	// Name identifies the channel in logs instead of its URL.
	Name     string
	URL      Secret
	HMAC     Secret // webhook only: key of the X-Signature header
	MinLevel string
	Timeout  time.Duration
}

// Secret is a value given inline, or read from an environment variable or
// a file when it is needed. Its String never shows the value.
type Secret struct {
	Value, Env, File string
}

// PushgatewayURL is the Pushgateway URL, read from PushgatewayFile when
// that is given; "" for no push. What the file holds is never shown.
func (m Metrics) PushgatewayURL(readFile func(string) ([]byte, error)) (string, error) {
	if m.PushgatewayFile == "" {
		return m.Pushgateway, nil
	}
	v, err := Secret{File: m.PushgatewayFile}.Resolve(func(string) string { return "" }, readFile)
	if err != nil {
		return "", err
	}
	if why := PushgatewayProblem(v); why != "" {
		return "", fmt.Errorf("%s: what it holds %s (not shown: it may be a secret)", m.PushgatewayFile, why)
	}
	return v, nil
}

// NotHTTP says a URL is not one IsHTTPURL takes, after what holds it.
const NotHTTP = "is not an absolute http or https URL"

// IsHTTPURL reports whether s is an absolute http or https URL with a
// host: what every URL autodeploy calls (a health check, a notification,
// the Pushgateway) must be, inline or read from elsewhere.
func IsHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// PushgatewayProblem says what is wrong with a Pushgateway URL, "" when
// nothing: the push appends /metrics/job/autodeploy to it as a string, so a
// query or fragment would end up before the path (seen: .../x?tok=.../metrics/job/autodeploy).
func PushgatewayProblem(v string) string {
	if !IsHTTPURL(v) {
		return NotHTTP
	}
	if u, _ := url.Parse(v); u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "has a query or fragment, which the push path would follow (/metrics/job/autodeploy is appended): give credentials as user:password@host"
	}
	return ""
}

// Set reports whether any source is given.
func (s Secret) Set() bool { return s.Value != "" || s.Env != "" || s.File != "" }

// Resolve reads the secret from its source. Its errors are *SecretError.
func (s Secret) Resolve(getenv func(string) string, readFile func(string) ([]byte, error)) (string, error) {
	switch {
	case s.Env != "":
		v := getenv(s.Env)
		if v == "" {
			return "", &SecretError{Err: fmt.Errorf("environment variable %s is empty or unset", s.Env),
				Fix: "set " + s.Env + " in the environment runs have (the cron line, the systemd unit, the CronJob's Secret)"}
		}
		return v, nil
	case s.File != "":
		b, err := readFile(s.File)
		if err != nil {
			return "", &SecretError{Err: fmt.Errorf("read %s: %w", s.File, err),
				Fix: "create " + s.File + ", readable by the user runs are, or name another file"}
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", &SecretError{Err: fmt.Errorf("%s is empty", s.File), Fix: "write the value into " + s.File}
		}
		return v, nil
	}
	return s.Value, nil
}

// SecretError is a secret its source could not give, with the fix for
// that source: a variable to set, or a file to create or fill (doctor and
// the run's problem line told to "make the file readable" of a variable;
// issue 18, seventh pass).
type SecretError struct {
	Err error
	Fix string
}

func (e *SecretError) Error() string { return e.Err.Error() }
func (e *SecretError) Unwrap() error { return e.Err }

// SecretFix is the fix of the SecretError in err, or, when there is none
// (a URL read that is not one), to put an absolute http or https URL
// where the config says.
func SecretFix(err error) string {
	var se *SecretError
	if errors.As(err, &se) {
		return se.Fix
	}
	return "put an absolute http or https URL there"
}

func (s Secret) String() string {
	switch {
	case s.Env != "":
		return "$" + s.Env
	case s.File != "":
		return s.File
	case s.Value != "":
		return "(inline, hidden)"
	}
	return "(none)"
}

// Metrics configures the Prometheus output of runs.
type Metrics struct {
	// TextfileDir is node_exporter's textfile collector directory; each run
	// writes autodeploy.prom there. Empty: no file.
	TextfileDir string
	// Pushgateway is a Pushgateway URL to push to. Empty: no push.
	Pushgateway string
	// PushgatewayFile is a file holding the Pushgateway URL, read at each
	// push: a URL with a credential kept out of the config (manifests
	// cronjob puts it in the Secret). At most one of the two.
	PushgatewayFile string
}

func (d *decoder) notify(rn rawNotify, path string) Notify {
	n := Notify{
		Type:     rn.Type.or(""),
		Name:     rn.Name.or(rn.Type.or("notify")),
		URL:      Secret{Value: rn.URL.or(""), Env: rn.URLEnv.or(""), File: rn.URLFile.or("")},
		HMAC:     Secret{Value: rn.Secret.or(""), Env: rn.SecretEnv.or(""), File: rn.SecretFile.or("")},
		MinLevel: rn.MinLevel.or("info"),
		Timeout:  rn.Timeout.or(DefaultNotifyTimeout),
	}
	switch {
	case !rn.Type.Set:
		d.add(rn.Line, path, `missing required key "type" (slack, discord or webhook)`)
	case rn.Type.ok() && !slices.Contains([]string{NotifySlack, NotifyDiscord, NotifyWebhook}, n.Type):
		d.add(rn.Type.Line, rn.Type.Path, fmt.Sprintf("unknown type %s (use slack, discord or webhook)", quote(n.Type)))
	}
	sources := 0
	for _, o := range []opt[string]{rn.URL, rn.URLEnv, rn.URLFile} {
		if o.Set {
			sources++
		}
	}
	if sources != 1 {
		d.add(rn.Line, path, fmt.Sprintf("give exactly one of url, urlEnv or urlFile (got %d)", sources))
	}
	if rn.URL.ok() {
		if !IsHTTPURL(n.URL.Value) {
			// The value is a secret: name the key, not the value.
			d.add(rn.URL.Line, rn.URL.Path, "must be an absolute http or https URL")
		}
	}
	d.absPath(rn.URLFile)
	hmacSources := 0
	for _, o := range []opt[string]{rn.Secret, rn.SecretEnv, rn.SecretFile} {
		if o.Set {
			hmacSources++
		}
	}
	if hmacSources > 1 {
		d.add(rn.Line, path, "give at most one of secret, secretEnv or secretFile")
	}
	if hmacSources > 0 && n.Type != NotifyWebhook && rn.Type.ok() {
		d.add(rn.Line, path, "secret, secretEnv and secretFile sign generic webhooks only")
	}
	d.absPath(rn.SecretFile)
	if rn.MinLevel.ok() && !slices.Contains(Levels, n.MinLevel) {
		d.add(rn.MinLevel.Line, rn.MinLevel.Path, fmt.Sprintf("unknown level %s (use info, warning or error)", quote(n.MinLevel)))
	}
	d.durationAtLeast(rn.Timeout, minHTTPTimeout, whyMinHTTPTimeout)
	return n
}

func (d *decoder) metrics(rm rawMetrics) Metrics {
	m := Metrics{TextfileDir: rm.TextfileDir.or(""), Pushgateway: rm.Pushgateway.or(""), PushgatewayFile: rm.PushgatewayFile.or("")}
	d.absPath(rm.TextfileDir)
	d.absPath(rm.PushgatewayFile)
	if rm.Pushgateway.ok() && rm.PushgatewayFile.ok() {
		d.add(rm.PushgatewayFile.Line, rm.PushgatewayFile.Path, "give at most one of pushgateway or pushgatewayFile")
	}
	if rm.Pushgateway.ok() {
		switch why := PushgatewayProblem(m.Pushgateway); {
		case why == NotHTTP:
			d.add(rm.Pushgateway.Line, rm.Pushgateway.Path, fmt.Sprintf("must be an absolute http or https URL, got %s", quote(RedactURL(m.Pushgateway))))
		case why != "":
			d.add(rm.Pushgateway.Line, rm.Pushgateway.Path, fmt.Sprintf("%s %s", quote(RedactURL(m.Pushgateway)), why))
		}
	}
	return m
}
