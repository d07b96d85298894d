package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An unreachable API server is one failed check: the log, the lock and
// the schedule, which need no cluster, are checked all the same (issue
// 18, item 4).
func TestDoctorChecksTheHostWithoutTheCluster(t *testing.T) {
	cfg, _ := writeConfig(t, "")
	code, out, _ := execute(t, nil, "doctor", "--config", cfg, "--kubeconfig", unreachableKubeconfig(t))
	if code != ExitError {
		t.Errorf("exit %d, want %d", code, ExitError)
	}
	for _, want := range []string{"✗ api server", "✔ log", "✔ lock", "schedule"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}

// SIGINT or SIGTERM stops doctor while it waits for an API server that
// does not answer, with the exit code of every interrupted command, not
// after the 30 s request timeout.
func TestDoctorStopsOnASignal(t *testing.T) {
	asked := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- struct{}{}:
		default:
		}
		<-r.Context().Done() // never answers
	}))
	defer srv.Close()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	body := "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"" + srv.URL + "\"}}]\n" +
		"users: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
	if err := os.WriteFile(kc, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _ := writeConfig(t, "")
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	go func() {
		<-asked
		cancel(errInterrupted) // as interruptContext does on the signal
	}()
	var errOut strings.Builder
	f := NewFactory(IOStreams{In: strings.NewReader(""), Out: &strings.Builder{}, ErrOut: &errOut}, func(string) string { return "" })
	start := time.Now()
	code := Execute(ctx, f, []string{"doctor", "--config", cfg, "--kubeconfig", kc})
	if code != ExitInterrupted {
		t.Errorf("exit %d, want %d; stderr: %s", code, ExitInterrupted, errOut.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("doctor took %v after the signal", d)
	}
}
