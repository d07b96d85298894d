package cli

import (
	"strings"
	"testing"
)

// A name that is not configured is looked for in the exclusions of the
// configured policies' ImageRepositories; with no policy to search there
// is nothing to look in, and the name is most likely a typo: a usage
// error naming the configured services, before any request.
func TestForgetUnknownNameWithNothingToSearch(t *testing.T) {
	cfg, _ := writeConfig(t, "services: []\n")
	code, stdout, stderr := execute(t, nil, "forget", "old-api", "--config", cfg, "--kubeconfig", unreachableKubeconfig(t))
	if code != ExitUsage || !strings.Contains(stderr, `unknown service "old-api"`) || !strings.Contains(stderr, "no ImageRepository could be searched") || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// forget acts on names no longer configured, so it looked up whatever it
// was given: "a b", "../x" or a name with a terminal escape in it were
// searched for and printed raw in its note ("note: a\x1b[31mred is not a
// configured service", colouring the terminal; issue 18, fifth pass). A
// name no config can hold was never a service: usage error, with the rule.
func TestForgetRefusesWhatCannotBeAServiceName(t *testing.T) {
	cfg, _ := writeConfig(t, "")
	for _, name := range []string{"a b", "../x", "API", "a\x1b[31mred", strings.Repeat("a", 64), "a-"} {
		code, stdout, stderr := execute(t, nil, "forget", name, "--config", cfg, "--kubeconfig", unreachableKubeconfig(t))
		if code != ExitUsage || !strings.Contains(stderr, "is not a valid service name (must be a DNS-1123 label") || strings.Contains(stderr+stdout, "\x1b") {
			t.Errorf("forget %q: exit %d, stdout %q, stderr %q; want a usage error with the rule, escaped", name, code, stdout, stderr)
		}
	}
}
