package config

import (
	"net/url"
	"strings"
)

// RedactURL returns s as it may be shown: the user info's password (or a
// lone user name, which is how tokens are given: https://TOKEN@host), every
// query value, the fragment and the user info of a URL without its scheme
// ("admin:pw@host") are replaced by "redacted"; the scheme, host, path and
// query parameter names stay, enough to recognise the URL. Every query
// value, not those of names that look secret: a list of names always misses
// one (private_token, X-Amz-Credential, s; issue 18, item 1). A URL that
// does not parse is replaced whole: it may be anything. It is how a URL is
// shown anywhere but where it is used (logs, output, status, annotations,
// notifications, validation errors).
func RedactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable URL>"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "redacted")
		} else if u.User.Username() != "" {
			u.User = url.User("redacted")
		}
	}
	if i := strings.LastIndex(u.Opaque, "@"); i >= 0 {
		// "admin:pw@host" parses as the scheme admin and the opaque
		// "pw@host"; "localhost:8080/healthz" (no user info) stays readable.
		u.Opaque = "redacted" + u.Opaque[i:]
	}
	if u.RawQuery != "" {
		// Split by hand, not by url.Query: it drops what it cannot parse
		// (a ";", a bad escape), and what it drops must not vanish from
		// the shown URL unnoticed any more than it may be shown.
		parts := strings.Split(u.RawQuery, "&")
		for i, p := range parts {
			if name, _, has := strings.Cut(p, "="); has {
				parts[i] = name + "=redacted"
			} else if p != "" {
				parts[i] = "redacted" // a bare value may be the token itself
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = "redacted", ""
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
