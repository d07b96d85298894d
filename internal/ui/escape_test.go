package ui

import (
	"reflect"
	"testing"
	"time"
)

// Escape shows what a terminal would act on (escape sequences, a bell, a
// newline that forges an output line, bidi overrides) as Go escapes, and
// keeps printable text, UTF-8 included.
func TestEscape(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"incident 42: DB migration", "incident 42: DB migration"},
		{"café ✓ 日本 — ok", "café ✓ 日本 — ok"},
		{"\x1b]0;pwned\x07\x1b[2J", `\x1b]0;pwned\a\x1b[2J`},
		{"line\nforged ✔ gateway healthy", `line\nforged ✔ gateway healthy`},
		{"tab\there\rback", `tab\there\rback`},
		{"del\x7f c1\u009b8m", `del\x7f c1\u009b8m`},
		{"evil\u202etxt.exe\u2066", `evil\u202etxt.exe\u2066`},
		{"bad \xff utf8", `bad \xff utf8`},
		{"", ""},
	} {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEscaped(t *testing.T) {
	type inner struct {
		S      string
		hidden string
	}
	type outer struct {
		S   string
		P   *inner
		L   []string
		M   map[string]string
		T   time.Time
		N   int
		Nil *inner
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in := &outer{S: "a\x1b", P: &inner{S: "b\x07", hidden: "h"}, L: []string{"c\n"}, M: map[string]string{"k\r": "v\x1b"}, T: at, N: 7}
	got := Escaped(in)
	want := &outer{S: `a\x1b`, P: &inner{S: `b\a`, hidden: "h"}, L: []string{`c\n`}, M: map[string]string{`k\r`: `v\x1b`}, T: at, N: 7}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Escaped = %+v, want %+v", got, want)
	}
	if in.S != "a\x1b" || in.P.S != "b\x07" || in.L[0] != "c\n" || in.M["k\r"] != "v\x1b" {
		t.Errorf("Escaped changed its input: %+v", in)
	}
}
