package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
)

// A rollback whose wait is interrupted was applied and is not verified: not
// exit 6 ("did not become healthy", issue 17 item 9), but the code of what
// stopped it, with what to run to check it.
func TestRollbackInterruptedExitCode(t *testing.T) {
	tests := []struct {
		name  string
		cause error
		code  ExitCode
		says  string
	}{
		{name: "SIGINT", cause: errInterrupted, code: ExitInterrupted, says: "interrupted (SIGINT or SIGTERM)"},
		{name: "lost Lease", cause: fmt.Errorf("%w: lease flux-system/autodeploy could not be renewed", lock.ErrLost), code: ExitLocked, says: "the lock was lost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := error(&deploy.RollbackUnverifiedError{Namespace: "apps", Deployment: "api", Err: tt.cause})
			if c := exitCodeFor(err); c != tt.code {
				t.Errorf("exit %d, want %d", c, tt.code)
			}
			for _, want := range []string{"applied but not yet verified", tt.says, "kubectl rollout status deployment/api -n apps"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%q lacks %q", err, want)
				}
			}
		})
	}
}
