package config

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"http://admin:PASSWORD@api.local/health", "http://admin:redacted@api.local/health"},
		{"https://api.local/health?token=PASSWORD&svc=api", "https://api.local/health?svc=api&token=redacted"},
		{"https://api.local/health?svc=api", "https://api.local/health?svc=api"},
		{"http://user@api.local/", "http://user@api.local/"},
		{"http://[::1:bad", "<unparsable URL>"},
	} {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Go's HTTP client prints the URL with the password as ***, the query
	// as it is.
	raw := "http://admin:PASSWORD@api.local/health?token=PASSWORD"
	err := &url.Error{Op: "Get", URL: "http://admin:***@api.local/health?token=PASSWORD", Err: errors.New("connection refused")}
	if got := RedactIn(err.Error()+" "+raw, raw); strings.Contains(got, "PASSWORD") {
		t.Errorf("RedactIn left the secret: %s", got)
	}
}
