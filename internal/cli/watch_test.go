package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/kube"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
)

// --probe-address :99999 passed Validate (it splits into host and port)
// and failed at the listen, exit 1, after the config, the log and the
// cluster (issue 18, fifth pass): a port that cannot be one is a usage
// error, before anything is read.
func TestWatchProbeAddress(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{":8080", true},
		{"127.0.0.1:8080", true},
		{"[::1]:8080", true},
		{":0", true},
		{":http", true},
		{"8080", false},
		{":99999", false},
		{":65536", false},
		{":-1", false},
		{":no-such-service", false},
		{"", true},
	}
	for _, tt := range tests {
		err := (&WatchOptions{ProbeAddress: tt.addr}).Validate()
		if (err == nil) != tt.ok {
			t.Errorf("--probe-address %q: Validate = %v, want ok %v", tt.addr, err, tt.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "--probe-address") || exitCodeFor(err) != ExitUsage) {
			t.Errorf("--probe-address %q: %v (exit %d), want a usage error naming the flag", tt.addr, err, exitCodeFor(err))
		}
	}
}

// The idle memory goes back once no action ran for idleAfter, not after
// each action: an action starting cancels the pending give-back, so a
// burst of pushes does not fault the executable's pages back in each time.
func TestWatchReleasesIdleMemoryWhenIdle(t *testing.T) {
	released := make(chan struct{}, 2)
	o := &WatchOptions{idleAfter: time.Hour, release: func() error { released <- struct{}{}; return nil }}
	log := slog.New(slog.DiscardHandler)
	o.releaseWhenIdle(log)
	o.busy() // the next action starts within the hour
	if o.idleTimer.Stop() {
		t.Fatal("the give-back is still pending after an action started")
	}
	o.idleAfter = 0
	o.releaseWhenIdle(log)
	<-released // given back once idle
}

// The watcher names the kubeconfig's server and file in its lost line
// (issue 18, sixth pass: "lost the API server" named none, while exit 3
// names both).
func TestWatcherKnowsItsServer(t *testing.T) {
	o := &WatchOptions{clients: &kube.Clients{Kube: fake.NewClientset(), Config: &rest.Config{Host: "https://127.0.0.1:6443"}, Source: "/etc/autodeploy/kubeconfig"}}
	w := o.newWatcher(nil, nil)
	if w.Server != "https://127.0.0.1:6443" || w.Kubeconfig != "/etc/autodeploy/kubeconfig" {
		t.Errorf("watcher's server %q, kubeconfig %q; want the clients'", w.Server, w.Kubeconfig)
	}
	// and explains its errors as exit 3 does (the clients' Classify).
	if w.Classify == nil {
		t.Fatal("the watcher has no Classify: its lost line shows client-go's raw text")
	}
	var ue *kube.UnreachableError
	if err := w.Classify(fmt.Errorf("reading: %w", io.ErrUnexpectedEOF)); !errors.As(err, &ue) || ue.Server != "https://127.0.0.1:6443" {
		t.Errorf("Classify of a cut body: %v, want the clients' UnreachableError", err)
	}
	// Fake clients (tests) have no rest.Config: no server to name.
	o.clients.Config = nil
	if w := o.newWatcher(nil, nil); w.Server != "" {
		t.Errorf("server %q without a rest.Config", w.Server)
	}
}

// A probe address that is not this host's was told to "choose another
// port", which no port fixes (issue 18, ninth pass); a port in use still is.
func TestWatchProbeListenFix(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tt := range []struct{ addr, want string }{
		{"192.0.2.1:8080", "(use an address of this host, or :8080 for all of them)"}, // TEST-NET-1: no host has it
		{busy.Addr().String(), "(choose another port)"},
	} {
		srv, err := (&WatchOptions{ProbeAddress: tt.addr}).serveProbes()
		if err == nil {
			srv.Close()
		}
		if err == nil || !strings.HasPrefix(err.Error(), "--probe-address "+tt.addr+": ") || !strings.HasSuffix(err.Error(), tt.want) {
			t.Errorf("serveProbes(%s) = %v, want it to end %q", tt.addr, err, tt.want)
		}
	}
}
