package config

import (
	"net/url"
	"strings"
)

// secretParams are query parameters that carry credentials in URLs people
// paste into configs (tokens of health endpoints, signed URLs).
var secretParams = []string{"token", "access_token", "api_key", "apikey", "key", "secret", "password", "passwd", "pass", "auth", "sig", "signature", "x-amz-signature"}

// RedactURL returns s without its credentials: the password of the user
// info and the values of query parameters that carry secrets are replaced
// by "redacted". A URL that does not parse is replaced whole: it may be
// anything. It is how a URL is shown anywhere but where it is used (logs,
// output, status, annotations, notifications).
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable URL>"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "redacted")
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			for _, p := range secretParams {
				if strings.EqualFold(k, p) {
					q.Set(k, "redacted")
				}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// RedactIn replaces every occurrence of the URL s (and of the forms Go's
// HTTP client prints it in) in text by its redacted form.
func RedactIn(text, s string) string {
	if s == "" {
		return text
	}
	red := RedactURL(s)
	text = strings.ReplaceAll(text, s, red)
	if u, err := url.Parse(s); err == nil && u.User != nil {
		// net/http's errors print the URL with the password as "***".
		if pw, has := u.User.Password(); has {
			for _, userinfo := range []string{u.User.Username() + ":" + pw, u.User.String()} {
				stripped := strings.Replace(s, userinfo+"@", u.User.Username()+":***@", 1)
				text = strings.ReplaceAll(text, stripped, red)
			}
		}
	}
	return text
}
