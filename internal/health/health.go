// Package health runs a service's HTTP health check after a rollout: the
// seed checked that the API answered with the new version, and so can this
// (expectBody may contain the new tag).
package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/ui"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// Error is a failed health check, with what it tells about the image.
type Error struct {
	// Answered: the service answered, wrongly (its status or body): the
	// evidence against the image. Otherwise it never answered (refused,
	// timed out, no such host), which may be the network's.
	Answered bool
	// Setup: the check could not be sent (its Authorization header cannot
	// be read): autodeploy's setup, not the image.
	Setup bool
	msg   string
	// cause is the source's error of a Setup error (config.SecretFix
	// reads its fix).
	cause error
}

func (e *Error) Error() string { return e.msg }
func (e *Error) Unwrap() error { return e.cause }

// WrongAnswer is the error of a check the service answered wrongly: what a
// stand-in for Check (deploy.Runner.Health in tests) returns to blame the
// image.
func WrongAnswer(format string, args ...any) error {
	return &Error{Answered: true, msg: fmt.Sprintf(format, args...)}
}

// Preflight reports whether the check can be sent: its URL and its
// credential can be read. Run before a deploy, so that a missing credential
// stops the deploy instead of failing a good image after it (issue 17,
// item 3).
func Preflight(h config.Health) error {
	_, _, err := resolve(h)
	return err
}

// resolve reads the check's URL and Authorization header from their
// sources. The errors name the variable or file, never a value, and are
// setup errors: autodeploy's, not the image's.
func resolve(h config.Health) (u, auth string, err error) {
	if u, err = h.URL.Resolve(os.Getenv, config.ReadFile); err != nil {
		return "", "", &Error{Setup: true, msg: fmt.Sprintf("health check URL: %v", err), cause: err}
	}
	if h.URL.Env != "" || h.URL.File != "" {
		// Checked by Load when inline; from elsewhere, here.
		if !config.IsHTTPURL(u) {
			// Never echoed: what is there instead of a URL is most
			// likely the token itself (issue 18, review item 5).
			return "", "", &Error{Setup: true, msg: fmt.Sprintf("health check URL from %s: what it holds %s (not shown: it may be a secret)", h.URL, config.NotHTTP)}
		}
	}
	if h.Authorization.Set() {
		if auth, err = h.Authorization.Resolve(os.Getenv, config.ReadFile); err != nil {
			return "", "", &Error{Setup: true, msg: fmt.Sprintf("health check %s: Authorization header: %v", config.RedactURL(u), err), cause: err}
		}
	}
	return u, auth, nil
}

// Check calls h.URL until it answers h.ExpectStatus with a body containing
// the rendered h.ExpectBody, retrying every h.Interval until h.Timeout. The
// error describes the last attempt.
func Check(ctx context.Context, h config.Health, image, tag string) error {
	want, err := h.RenderBody(image, tag)
	if err != nil {
		return err
	}
	// Read at each check: a rotated token (or URL) is picked up.
	u, auth, err := resolve(h)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	client := &http.Client{
		// A redirect to a login page is not health.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var last error
	answered := false
	for {
		err := attempt(ctx, client, h, u, want, auth)
		if err == nil {
			return nil
		}
		// An attempt cut short by the deadline says less than the one before.
		if last == nil || ctx.Err() == nil {
			last = err
			_, answered = err.(*wrongAnswer)
		}
		t := time.NewTimer(h.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			if ctx.Err() == context.DeadlineExceeded && last != nil {
				// The URL may carry credentials: this error goes to the log,
				// the summary, notifications and the failed-image annotation.
				return &Error{Answered: answered, msg: fmt.Sprintf("health check %s failed for %s: %s", config.RedactURL(u), h.Timeout, config.RedactIn(last.Error(), u))}
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

func attempt(ctx context.Context, client *http.Client, h config.Health, u, want, auth string) error {
	actx, cancel := context.WithTimeout(ctx, min(h.Timeout, 10*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("invalid health check URL %s", config.RedactURL(u))
	}
	req.Header.Set("User-Agent", "autodeploy-health")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		// The URL in a transport error is net/http's own spelling of it
		// (the password as ***, every query value as given): replaced by
		// the redacted URL through its structure, not found by matching
		// strings (issue 17, item 13).
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("%s %s: %w", ue.Op, config.RedactURL(u), ue.Err)
		}
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != h.ExpectStatus {
		return &wrongAnswer{fmt.Sprintf("status %d, want %d", resp.StatusCode, h.ExpectStatus)}
	}
	if want != "" && !strings.Contains(string(body), want) {
		// Not the body itself: this error lands in the failed-image mark and
		// the change-cause, which every reader of Deployments sees, and an
		// answer may hold anything (issue 17, item 13).
		return &wrongAnswer{fmt.Sprintf("body does not contain %q (%s received)", want, ui.Count(len(body), "byte", "bytes"))}
	}
	return nil
}

// wrongAnswer: the service answered, not what the check expects.
type wrongAnswer struct{ msg string }

func (e *wrongAnswer) Error() string { return e.msg }
