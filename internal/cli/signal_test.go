package cli

import (
	"bytes"
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
)

// The first SIGINT or SIGTERM cancels the command's context: it stops
// waiting, writes its marks and releases the lock. A second one exits at
// once with the interrupted code, saying what was left (issue 17 item 13:
// a second Ctrl-C could not force an exit).
func TestInterruptContext(t *testing.T) {
	tests := []struct {
		name    string
		signals []os.Signal
		tty     bool
		exit    bool
		stderr  []string
	}{
		{name: "none"},
		{name: "one SIGTERM under cron", signals: []os.Signal{syscall.SIGTERM}},
		{name: "one Ctrl-C on a terminal", signals: []os.Signal{os.Interrupt}, tty: true, stderr: []string{"Ctrl-C again to exit now"}},
		{name: "twice", signals: []os.Signal{os.Interrupt, os.Interrupt}, exit: true, stderr: []string{"interrupted twice: exiting now", "the next run verifies what was left unverified"}},
		{name: "SIGINT then SIGTERM", signals: []os.Signal{os.Interrupt, syscall.SIGTERM}, tty: true, exit: true, stderr: []string{"interrupted twice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sigs := make(chan os.Signal)
			var errOut bytes.Buffer
			exited := make(chan ExitCode, 1)
			ctx, stop := interruptContext(context.Background(), sigs, &errOut, tt.tty, func(c ExitCode) { exited <- c })
			for i, s := range tt.signals {
				sigs <- s // unbuffered: received by the time the send returns
				if i == 0 {
					<-ctx.Done()
				}
			}
			if tt.exit {
				if c := <-exited; c != ExitInterrupted {
					t.Fatalf("exit %d, want %d", c, ExitInterrupted)
				}
			}
			if got := ctx.Err() != nil; got != (len(tt.signals) > 0) {
				t.Errorf("context cancelled %v after %d signals", got, len(tt.signals))
			}
			stop() // waits for the watcher: no exit can come after it
			select {
			case c := <-exited:
				t.Fatalf("exit %d, want none", c)
			default:
			}
			for _, want := range tt.stderr {
				if !strings.Contains(errOut.String(), want) {
					t.Errorf("stderr %q lacks %q", errOut.String(), want)
				}
			}
			if len(tt.stderr) == 0 && errOut.Len() > 0 {
				t.Errorf("stderr %q, want nothing", errOut.String())
			}
		})
	}
}
