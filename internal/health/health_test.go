package health

import (
	"context"
	"net/http"
	"net/http/httptest"
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
		{name: "old version answers", path: "/old", body: "{{.Tag}}", wantErr: `body does not contain "v1.0.1"`},
		{name: "redirect is not followed", path: "/redirect", wantErr: "status 302, want 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls.Store(0)
			h := config.Health{URL: srv.URL + tt.path, ExpectStatus: 200, ExpectBody: tt.body, Timeout: time.Second, Interval: 10 * time.Millisecond}
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
		})
	}
}

func TestCheckCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h := config.Health{URL: "http://127.0.0.1:1/", ExpectStatus: 200, Timeout: time.Minute, Interval: time.Second}
	if err := Check(ctx, h, "x:1", "1"); err != context.Canceled {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
