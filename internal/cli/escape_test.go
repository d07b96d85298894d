package cli

import (
	"bytes"
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
