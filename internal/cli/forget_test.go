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
