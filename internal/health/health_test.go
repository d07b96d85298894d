package health

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

func TestCheck(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch r.URL.Path {
		case "/flaky": // the new pods need a moment: fail twice, then answer
			if n < 3 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte(`{"version":"v1.0.1"}`))
		case "/old":
			w.Write([]byte(`{"version":"v1.0.0"}`))
		case "/redirect":
			http.Redirect(w, r, "/login", http.StatusFound)
		}
	}))
	defer srv.Close()
	tests := []struct {
		name, path, body string
		wantErr          string
	}{
		{name: "retries until healthy", path: "/flaky", body: "{{.Tag}}"},
		{name: "old version answers", path: "/old", body: "{{.Tag}}", wantErr: `body does not contain "v1.0.1" (20 bytes received)`},
		{name: "redirect is not followed", path: "/redirect", wantErr: "status 302, want 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls.Store(0)
			h := config.Health{URL: config.Secret{Value: srv.URL + tt.path}, ExpectStatus: 200, ExpectBody: tt.body, Timeout: time.Second, Interval: 10 * time.Millisecond}
			err := Check(context.Background(), h, "ghcr.io/x/api:v1.0.1", "v1.0.1")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			// A wrong answer is the evidence against the image.
			if he, ok := err.(*Error); !ok || !he.Answered || he.Setup {
				t.Errorf("err = %#v, want an answered *Error", err)
			}
			// The answer stays out of the error: it ends up in annotations.
			if strings.Contains(err.Error(), "version") {
				t.Errorf("err = %v quotes the body", err)
			}
		})
	}
}

// A service that never answers is no evidence against the image: the
// network may be at fault (issue 17: only the image's cause is remembered).
func TestCheckNoAnswer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more: connection refused
	h := config.Health{URL: config.Secret{Value: url}, ExpectStatus: 200, Timeout: 100 * time.Millisecond, Interval: 10 * time.Millisecond}
	err := Check(context.Background(), h, "x:1", "1")
	if he, ok := err.(*Error); !ok || he.Answered || he.Setup {
		t.Fatalf("err = %#v, want an unanswered *Error", err)
	}
}

// A failed check names the URL redacted, whatever spelling net/http gives
// it: a password and no query value ever appear. The error is what the
// log, the summary, the failed-image annotation, status and notifications
// show (issue 18, item 1: private_token and the like were shown in full).
func TestCheckFailureRedacts(t *testing.T) {
	refused := httptest.NewServer(http.NotFoundHandler())
	refused.Close()
	wrong := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer wrong.Close()
	for _, base := range []struct{ name, url, want string }{
		{"refused", refused.URL, "connection refused"},
		{"wrong answer", wrong.URL, "status 503"},
	} {
		for _, q := range []string{"token", "private_token", "refresh_token", "id_token", "client_secret", "jwt", "pwd", "session", "credential", "authorization", "X-Amz-Credential"} {
			t.Run(base.name+"/"+q, func(t *testing.T) {
				u := strings.Replace(base.url, "http://", "http://ops:p%40ss-s3cr3t@", 1) + "/health?" + q + "=s3cr3t-tok&svc=api"
				h := config.Health{URL: config.Secret{Value: u}, ExpectStatus: 200, Timeout: 100 * time.Millisecond, Interval: 10 * time.Millisecond}
				err := Check(context.Background(), h, "x:1", "1")
				if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), base.want) || !strings.Contains(err.Error(), q+"=redacted") {
					t.Fatalf("err = %v", err)
				}
			})
		}
	}
}

func TestCheckCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h := config.Health{URL: config.Secret{Value: "http://127.0.0.1:1/"}, ExpectStatus: 200, Timeout: time.Minute, Interval: time.Second}
	if err := Check(ctx, h, "x:1", "1"); err != context.Canceled {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// The Authorization header comes from a file (or a variable), read at each
// check; an unreadable source is named in the error, never a value.
func TestCheckAuthorization(t *testing.T) {
	const token = "Bearer s3cr3t-token"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := config.Health{URL: config.Secret{Value: srv.URL}, ExpectStatus: 200, Timeout: time.Second, Interval: 10 * time.Millisecond, Authorization: config.Secret{File: file}}
	if err := Check(context.Background(), h, "img:v1", "v1"); err != nil {
		t.Fatalf("with the header from the file: %v", err)
	}
	h.Authorization = config.Secret{Env: "AUTODEPLOY_TEST_UNSET_HEALTH_AUTH"}
	err := Check(context.Background(), h, "img:v1", "v1")
	if err == nil || !strings.Contains(err.Error(), "AUTODEPLOY_TEST_UNSET_HEALTH_AUTH") || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("unset variable: %v", err)
	}
	// Autodeploy's setup, not the image; and known before any deploy.
	if he, ok := err.(*Error); !ok || !he.Setup {
		t.Errorf("unset variable: %#v, want a setup *Error", err)
	}
	for _, a := range []config.Secret{{Env: "AUTODEPLOY_TEST_UNSET_HEALTH_AUTH"}, {File: filepath.Join(t.TempDir(), "missing")}} {
		h.Authorization = a
		if he, ok := Preflight(h).(*Error); !ok || !he.Setup {
			t.Errorf("Preflight(%v) = %v, want a setup *Error", a, Preflight(h))
		}
	}
	h.Authorization = config.Secret{File: file}
	if err := Preflight(h); err != nil {
		t.Errorf("Preflight with a readable file: %v", err)
	}
}

// A URL from a file (or a variable) is read at each check; an unreadable
// or invalid one is autodeploy's setup, named by its source, never shown.
func TestCheckURLFromFile(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("private_token") != "s3cr3t" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "url")
	if err := os.WriteFile(file, []byte(srv.URL+"/h?private_token=s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := config.Health{URL: config.Secret{File: file}, ExpectStatus: 200, Timeout: time.Second, Interval: 10 * time.Millisecond}
	if err := Check(context.Background(), h, "img:v1", "v1"); err != nil {
		t.Fatalf("with the URL from the file: %v", err)
	}
	if err := Preflight(h); err != nil {
		t.Errorf("Preflight with a readable file: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("ops:s3cr3t@host/h\n"), 0o600)
	for _, u := range []config.Secret{{Env: "AUTODEPLOY_TEST_UNSET_HEALTH_URL"}, {File: filepath.Join(t.TempDir(), "missing")}, {File: bad}} {
		h.URL = u
		for name, err := range map[string]error{"Check": Check(context.Background(), h, "img:v1", "v1"), "Preflight": Preflight(h)} {
			he, ok := err.(*Error)
			if !ok || !he.Setup || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), strings.TrimPrefix(u.String(), "$")) {
				t.Errorf("%s with URL %v: %v, want a setup *Error naming the source", name, u, err)
			}
		}
	}
}

// A URL file or variable holding something else than a URL (a bare token,
// the most likely mistake) is never echoed: doctor and config validate
// printed "got SECRETH-not-a-url" (issue 18, review item 5). The source is
// named, its content not.
func TestPreflightNeverEchoesANonURL(t *testing.T) {
	dir := t.TempDir()
	for _, content := range []string{"SECRETH-not-a-url", "ftp://SECRETH@host/x", "https:///SECRETH", "SECRETH:%zz"} {
		file := filepath.Join(dir, "url")
		if err := os.WriteFile(file, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		h := config.Health{URL: config.Secret{File: file}, ExpectStatus: 200, Timeout: time.Second, Interval: 10 * time.Millisecond}
		err := Preflight(h)
		if err == nil || strings.Contains(err.Error(), "SECRETH") || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "is not an absolute http or https URL") {
			t.Errorf("content %q: Preflight = %v; want the file named, its content not shown", content, err)
		}
	}
}
