package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
)

// run's progress, summary and cron line carry text from the cluster (a
// hold's reason, pods' messages, change causes): escaped on the way to the
// terminal, as status escapes it (issue 18, item 9).
func TestRunOutputEscapesControlCharacters(t *testing.T) {
	const evil = "\x1b]0;pwned\x07\x1b[2J\rforged"
	const shown = `\x1b]0;pwned\a\x1b[2J\rforged`
	res := &deploy.Result{Warnings: []string{"w " + evil}, Services: []deploy.ServiceResult{
		{Decision: deploy.Decision{Service: "api", Current: "r/api:v1", Target: "r/api:v2", Reason: "held by x: " + evil}, Outcome: deploy.OutcomeSkipped},
		{Decision: deploy.Decision{Service: "web"}, Outcome: deploy.OutcomeRollbackFailed, Error: "e " + evil},
	}}
	var b bytes.Buffer
	printSummary(&b, res)
	progressPrinter(&b)("api", "pod api-1: "+evil)
	progressPrinter(&b)("", "run "+evil)
	b.WriteString(failureLine(res, nil))
	out := b.String()
	// The cron line is one line: its \r was whitespace, made a space.
	if strings.ContainsAny(out, "\x1b\x07\r") || strings.Count(out, shown) != 5 || !strings.Contains(out, `e \x1b]0;pwned\a\x1b[2J forged`) {
		t.Errorf("raw or missing escapes (%d of 5 and the cron line's):\n%q", strings.Count(out, shown), out)
	}
	if res.Services[0].Reason != "held by x: "+evil {
		t.Errorf("the result was changed: %q", res.Services[0].Reason)
	}
}

// doctor's details quote paths and the cluster's messages: escaped.
func TestDoctorEscapesControlCharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "conf\x1b[2J")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("lockFile: "+filepath.Join(dir, "lock")+"\nlog: {file: "+filepath.Join(dir, "log")+"}\nservices:\n  - name: api\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, out, errOut := execute(t, nil, "doctor", "--color", "never", "--config", cfg, "--kubeconfig", unreachableKubeconfig(t))
	if strings.Contains(out+errOut, "\x1b") || !strings.Contains(out, `conf\x1b[2J`) {
		t.Errorf("raw or missing escape:\n%q\n%q", out, errOut)
	}
}

// The one "Error:" line (or lines: config validation lists one problem a
// line) is escaped line by line: errors quote paths and the cluster's text.
func TestErrorLineEscapesControlCharacters(t *testing.T) {
	_, _, errOut := execute(t, nil, "status", "--config", "/nonexistent/\x1b]0;pwned\x07.yaml")
	if strings.ContainsAny(errOut, "\x1b\x07") || !strings.Contains(errOut, `/nonexistent/\x1b]0;pwned\a.yaml`) {
		t.Errorf("raw or missing escape: %q", errOut)
	}
	cfg, _ := writeConfig(t, "schedule: bad\nrunTimeout: nope\nservices:\n  - name: api\n")
	_, _, errOut = execute(t, nil, "config", "validate", "--config", cfg)
	if strings.Count(errOut, "\n") < 2 {
		t.Errorf("the problems are no longer one a line: %q", errOut)
	}
}

// config validate names its file escaped, in its ok line and in its
// problems: a file name is anyone's who may write the directory, and raw
// it could clear the operator's terminal or reverse the line (issue 18,
// review item 7).
func TestConfigValidateEscapesTheFileName(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ name, src string }{
		{"ok", "services:\n  - name: api\n"},
		{"none", "services: []\n"},
		{"invalid", "services:\n  - name: API\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+"\x1b[2J\u202e.yaml")
			if err := os.WriteFile(path, []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			_, stdout, stderr := execute(t, nil, "config", "validate", path)
			if strings.ContainsAny(stdout+stderr, "\x1b\u202e") {
				t.Fatalf("the file name is raw:\nstdout %q\nstderr %q", stdout, stderr)
			}
			if !strings.Contains(stdout+stderr, tt.name+`\x1b[2J\u202e.yaml`) {
				t.Fatalf("the file name is not named, escaped:\nstdout %q\nstderr %q", stdout, stderr)
			}
		})
	}
}
