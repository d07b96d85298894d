package cli

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
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

// A run whose log lost lines says so on stderr, whatever else it says, and
// exits non-zero (issue 18, item 2: it exited 0 in silence): 11 when the
// run would otherwise exit 0 or with a code no one is mailed for (4, 10);
// a code that says what needs a person on the cluster is kept, and the
// loss is added to its line.
func TestLogLostExitCode(t *testing.T) {
	lost := &runlog.LostError{File: "/var/log/autodeploy/autodeploy.log", Lines: 7, At: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Err: syscall.ENOSPC}
	const says = "7 lines could not be written to the log file /var/log/autodeploy/autodeploy.log, from 2026-11-25T10:00:00.000Z on: no space left on device"
	tests := []struct {
		name string
		err  error
		lost error
		code ExitCode
		// want is in the printed line; "" means nothing is printed.
		want string
	}{
		{name: "no loss", err: nil, lost: nil, code: ExitOK},
		{name: "no loss, silent code", err: withCode(ExitSuperseded, &silentError{errors.New("run r1: 1 superseded")}), code: ExitSuperseded},
		{name: "all deployed", err: nil, lost: lost, code: ExitLogLost, want: "run r1: " + says},
		{name: "superseded", err: withCode(ExitSuperseded, &silentError{errors.New("run r1: 1 superseded")}), lost: lost, code: ExitLogLost, want: "run r1: 1 superseded; " + says},
		{name: "skipped", err: withCode(ExitLocked, &silentError{errors.New("another autodeploy holds the lock")}), lost: lost, code: ExitLogLost, want: says},
		{name: "a failed deploy keeps its code", err: withCode(ExitDeployFailed, errors.New("run r1: api rolled-back: boom (log: /x)")), lost: lost, code: ExitDeployFailed, want: "run r1: api rolled-back: boom (log: /x); " + says},
		{name: "a silent failed deploy keeps its code and is told", err: withCode(ExitRollbackFailed, &silentError{errors.New("run r1: 1 rollback-failed")}), lost: lost, code: ExitRollbackFailed, want: "run r1: 1 rollback-failed; " + says},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := withLogLost(tt.err, tt.lost, "run", "r1")
			if c := exitCodeFor(err); c != tt.code {
				t.Errorf("exit %d, want %d", c, tt.code)
			}
			var silent *silentError
			printed := err != nil && !errors.As(err, &silent)
			switch {
			case tt.want == "" && printed:
				t.Errorf("prints %q, want nothing", err)
			case tt.want != "" && !printed:
				t.Errorf("prints nothing, want %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("prints %q, want it to contain %q", err, tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), "autodeploy status"):
				t.Errorf("%q does not say where the truth is", err)
			}
		})
	}
}

// A Lease namespace that does not exist is the config's to fix: exit 2, as
// any config mistake (it was 1, "an unexpected error"), wrapped or not.
func TestLeaseNamespaceExitCode(t *testing.T) {
	ne := &lock.NamespaceError{Lease: "Lease nope/autodeploy", Namespace: "nope"}
	for _, err := range []error{ne, fmt.Errorf("cannot take the lock: %w", ne)} {
		if c := exitCodeFor(err); c != ExitUsage {
			t.Errorf("exitCodeFor(%v) = %d, want %d", err, c, ExitUsage)
		}
	}
}
