package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Each source's error carries the fix for that source: doctor and the run's
// problem line told to "make the file readable" of an unset variable
// (issue 18, seventh pass).
func TestSecretFix(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for _, tt := range []struct {
		s       Secret
		err     string
		fix     string
		notInIt string
	}{
		{Secret{Env: "AUTODEPLOY_TEST_UNSET_SECRET"}, "environment variable AUTODEPLOY_TEST_UNSET_SECRET is empty or unset", "set AUTODEPLOY_TEST_UNSET_SECRET in the environment runs have", "file"},
		{Secret{File: missing}, "read " + missing, "create " + missing + ", readable by the user runs are", "environment"},
		{Secret{File: empty}, empty + " is empty", "write the value into " + empty, "environment"},
	} {
		_, err := tt.s.Resolve(func(string) string { return "" }, os.ReadFile)
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%v: %v, want %q", tt.s, err, tt.err)
			continue
		}
		if fix := SecretFix(err); !strings.HasPrefix(fix, tt.fix) || strings.Contains(fix, tt.notInIt) {
			t.Errorf("%v: fix %q, want %q and no %q", tt.s, fix, tt.fix, tt.notInIt)
		}
	}
	// Wrapped (health's and notify's errors), still found.
	_, err := Secret{Env: "AUTODEPLOY_TEST_UNSET_SECRET"}.Resolve(func(string) string { return "" }, os.ReadFile)
	if fix := SecretFix(errors.Join(errors.New("health check URL"), err)); !strings.HasPrefix(fix, "set AUTODEPLOY_TEST_UNSET_SECRET") {
		t.Errorf("wrapped: fix %q", fix)
	}
	if fix := SecretFix(errors.New("URL from $X: what it holds is not a URL")); !strings.Contains(fix, "absolute http or https URL") {
		t.Errorf("not a URL: fix %q", fix)
	}
}
