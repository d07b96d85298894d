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
		{"https://api.local/health?token=PASSWORD&svc=api", "https://api.local/health?token=redacted&svc=redacted"},
		{"https://api.local/health", "https://api.local/health"},
		// A lone user info is how tokens are given (https://TOKEN@host).
		{"http://user@api.local/", "http://redacted@api.local/"},
		{"http://[::1:bad", "<unparsable URL>"},
		// Every query value, whatever its name: a list of names always
		// misses one (issue 18, item 1 found these in full).
		{"https://api.local/h?private_token=S1", "https://api.local/h?private_token=redacted"},
		{"https://api.local/h?refresh_token=S1&id_token=S2", "https://api.local/h?refresh_token=redacted&id_token=redacted"},
		{"https://api.local/h?client_secret=S1&jwt=S2&pwd=S3", "https://api.local/h?client_secret=redacted&jwt=redacted&pwd=redacted"},
		{"https://api.local/h?session=S1&credential=S2&authorization=S3", "https://api.local/h?session=redacted&credential=redacted&authorization=redacted"},
		{"https://api.local/h?X-Amz-Credential=S1&X-Amz-Security-Token=S2", "https://api.local/h?X-Amz-Credential=redacted&X-Amz-Security-Token=redacted"},
		{"https://api.local/h?s=S1", "https://api.local/h?s=redacted"},
		// A parameter without a value may be the token itself.
		{"https://api.local/h?S1", "https://api.local/h?redacted"},
		// What url.Query would drop or mangle is still redacted, in order.
		{"https://api.local/h?a=1;token=S1&b=%zzS2&&c", "https://api.local/h?a=redacted&b=redacted&&redacted"},
		// Not sent, but written where it can be seen.
		{"https://api.local/h#access_token=S1", "https://api.local/h#redacted"},
		// A forgotten scheme parses as an opaque URL: its user info is hidden.
		{"admin:S1@api.local/health", "admin:redacted@api.local/health"},
		{"localhost:8080/healthz", "localhost:8080/healthz"},
		{"", ""},
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
