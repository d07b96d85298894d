package cli

import (
	"context"
	"fmt"
	"io"
	"os"
)

// errInterrupted is the cause of a context a signal cancelled: what a
// command says when it stops on one (context.Cause).
var errInterrupted = fmt.Errorf("interrupted (SIGINT or SIGTERM): %w", context.Canceled)

// interruptContext is how a command hears SIGINT and SIGTERM, as they
// arrive on sigs (signal.Notify's channel in Main; the tests send their
// own). The first cancels the returned context: the command stops waiting,
// writes what it must (the unverified mark, the rollback's hold) and
// releases the lock, which can take a few seconds of API requests. A second
// one does not wait for that: it says what is left on errOut and calls exit
// with ExitInterrupted (os.Exit in Main), so that a person pressing Ctrl-C
// twice, or a supervisor sending SIGTERM again, gets the process back at
// once. Exiting then is safe: the kernel drops a file lock with the
// process, a Lease expires after leaseDuration, and the Deployment's marks
// make the next run verify what was left. On a terminal (tty), the first
// signal says that a second one exits now. stop ends the watch and cancels
// the context.
func interruptContext(parent context.Context, sigs <-chan os.Signal, errOut io.Writer, tty bool, exit func(ExitCode)) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-sigs:
		case <-done:
			return
		}
		cancel(errInterrupted)
		if tty {
			fmt.Fprintln(errOut, "interrupted: stopping and releasing the lock (Ctrl-C again to exit now)")
		}
		select {
		case <-sigs:
			fmt.Fprintln(errOut, "interrupted twice: exiting now; the next run verifies what was left unverified")
			exit(ExitInterrupted)
		case <-done:
		}
	}()
	return ctx, func() {
		select {
		case <-done:
		default:
			close(done)
		}
		<-stopped
		cancel(nil)
	}
}
