package cli

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
)

// ExitCode is the process exit status. The values are part of the CLI's
// contract (README, "Exit codes"): cron wrappers and monitoring act on them.
type ExitCode int

const (
	ExitOK             ExitCode = 0   // everything done, or nothing to do
	ExitError          ExitCode = 1   // an unexpected error
	ExitUsage          ExitCode = 2   // bad flags, arguments or config file (a lock.leaseNamespace that does not exist too)
	ExitUnreachable    ExitCode = 3   // cluster unreachable (or answering 503), credentials refused, or Flux CRDs missing
	ExitLocked         ExitCode = 4   // another run or rollback holds the lock
	ExitDeployFailed   ExitCode = 5   // a service failed and was rolled back (or auto-rollback is off)
	ExitRollbackFailed ExitCode = 6   // a failed service could not be rolled back: someone must look
	ExitServiceProblem ExitCode = 7   // a service could not be handled (missing Deployment, ImagePolicy or container, invalid image, left unverified) or needs a person (a failed image running, a deploy Flux reverted); promote: not promoted
	ExitDegraded       ExitCode = 8   // status: some service is not healthy and up to date
	ExitForbidden      ExitCode = 9   // RBAC refused a request autodeploy needs, discovery included (see manifests rbac, doctor)
	ExitSuperseded     ExitCode = 10  // run: someone else changed a service during its rollout; their change was left alone
	ExitLogLost        ExitCode = 11  // run (rollback, hold, resume, forget): lines of the run could not be written to the log (full or read-only file system); the cluster has the outcome
	ExitInterrupted    ExitCode = 130 // SIGINT/SIGTERM stopped the command
)

// exitError carries a chosen exit code through cobra's error return.
type exitError struct {
	code ExitCode
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode attaches an exit code to err; nil stays nil.
func withCode(code ExitCode, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// flagError marks a usage mistake, for which the usage line is worth printing.
type flagError struct{ err error }

func (e *flagError) Error() string { return e.err.Error() }
func (e *flagError) Unwrap() error { return e.err }

// exitCodeFor is the one place that turns an error into an exit code.
func exitCodeFor(err error) ExitCode {
	var (
		ee    *exitError
		held  *lock.HeldError
		fe    *flagError
		ve    *config.ValidationError
		nf    *config.FileError
		unrch *kube.UnreachableError
		lns   *lock.NamespaceError
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &held), errors.Is(err, lock.ErrLost):
		// A lost lock stops a command as a signal would, but another
		// host may hold the lock now: the lock's code, as for a run.
		return ExitLocked
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.As(err, &fe), errors.As(err, &ve), errors.As(err, &nf), errors.As(err, &lns):
		return ExitUsage
	case errors.As(err, &unrch), errors.Is(err, flux.ErrNotInstalled):
		return ExitUnreachable
	case apierrors.IsForbidden(err):
		return ExitForbidden
	}
	return ExitError
}

// withLogLost adds to a run's error that its log lost lines (lost, from
// runlog's Log.Lost), so that cron mails it: a run whose log filled up or
// turned read-only midway exited 0 in silence, its rollout and outcome
// lines missing (issue 18, item 2). The run's code is kept when it already
// needs a person; 0 and the codes no one is mailed for (4, 10) become
// ExitLogLost. What the run did is on the cluster (the Deployments' marks),
// where status and the next run read it. command is "run", or rollback,
// hold, resume or forget, whose lines (who acted, why) are lost as well.
func withLogLost(err, lost error, command, runID string) error {
	if lost == nil {
		return err
	}
	msg := fmt.Sprintf("%v; what the %s did is on the cluster: see autodeploy status (fix: free space on the log's file system or make it writable)", lost, command)
	var silent *silentError
	switch code := exitCodeFor(err); {
	case err == nil:
		return withCode(ExitLogLost, fmt.Errorf("%s %s: %s", command, runID, msg))
	case code == ExitLocked || code == ExitSuperseded:
		return withCode(ExitLogLost, fmt.Errorf("%v; %s", err, msg))
	case errors.As(err, &silent):
		// Its summary was printed on stdout, if anywhere: stderr says
		// it again, with the loss.
		return withCode(code, fmt.Errorf("%v; %s", silent.err, msg))
	default:
		return withCode(code, fmt.Errorf("%w; %s", err, msg))
	}
}
