package kube

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func writeKubeconfig(t *testing.T, dir, name, server string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	kc := "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"" + server + "\"}}, {name: d, cluster: {server: \"https://other:6443\"}}]\n" +
		"users: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}, {name: d, context: {cluster: d, user: u}}]\ncurrent-context: c\n"
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The kubeconfig is found where kubectl looks, then where k3s writes it.
func TestRESTConfigSources(t *testing.T) {
	dir := t.TempDir()
	explicit := writeKubeconfig(t, dir, "explicit", "https://explicit:6443")
	fromEnv := writeKubeconfig(t, dir, "env", "https://env:6443")
	home := writeKubeconfig(t, dir, "home", "https://home:6443")
	k3s := writeKubeconfig(t, dir, "k3s.yaml", "https://127.0.0.1:6443")
	missing := filepath.Join(dir, "missing")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name             string
		opts             Options
		env              map[string]string
		home, k3s        string
		wantHost, source string
		wantErr          string
	}{
		{name: "flag wins", opts: Options{Kubeconfig: explicit}, env: map[string]string{"KUBECONFIG": fromEnv}, home: home, k3s: k3s, wantHost: "https://explicit:6443", source: explicit},
		{name: "KUBECONFIG", env: map[string]string{"KUBECONFIG": fromEnv}, home: home, k3s: k3s, wantHost: "https://env:6443", source: fromEnv},
		{name: "home", home: home, k3s: k3s, wantHost: "https://home:6443", source: home},
		{name: "k3s when nothing else", home: missing, k3s: k3s, wantHost: "https://127.0.0.1:6443", source: k3s},
		{name: "context flag", opts: Options{Kubeconfig: explicit, Context: "d"}, home: missing, k3s: missing, wantHost: "https://other:6443", source: explicit},
		{name: "unknown context", opts: Options{Kubeconfig: explicit, Context: "nope"}, home: missing, k3s: missing, wantErr: `context "nope"`},
		{name: "nothing at all", home: missing, k3s: missing, wantErr: "no kubeconfig found"},
		// A kubeconfig named but empty (or KUBECONFIG naming no file) was
		// "(kubeconfig none): no kubeconfig found (tried --kubeconfig,
		// KUBECONFIG, ~/.kube/config, ...); pass --kubeconfig": the file
		// passed was not named, and with KUBECONFIG set nothing else is
		// tried (issue 18, ninth pass).
		{name: "an empty --kubeconfig", opts: Options{Kubeconfig: empty}, home: home, k3s: k3s,
			wantErr: "cannot use the cluster (kubeconfig " + empty + "): it holds no cluster, user or context: pass --kubeconfig a kubeconfig of the cluster"},
		{name: "KUBECONFIG naming an empty file", env: map[string]string{"KUBECONFIG": empty}, home: home, k3s: k3s,
			wantErr: "cannot use the cluster (kubeconfig " + empty + "): it holds no cluster, user or context: set KUBECONFIG to a kubeconfig of the cluster, or unset it"},
		{name: "KUBECONFIG naming no file", env: map[string]string{"KUBECONFIG": missing}, home: home, k3s: k3s,
			wantErr: "cannot use the cluster (kubeconfig " + missing + "): it does not exist or holds no cluster, user or context: set KUBECONFIG to a kubeconfig of the cluster, or unset it"},
		{name: "an empty ~/.kube/config", home: empty, k3s: k3s,
			wantErr: "cannot use the cluster (kubeconfig " + empty + "): it holds no cluster, user or context: pass --kubeconfig a kubeconfig of the cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			homeKubeconfig, k3sKubeconfig = tt.home, tt.k3s
			getenv = func(k string) string { return tt.env[k] }
			t.Setenv("KUBECONFIG", tt.env["KUBECONFIG"])
			t.Cleanup(func() { homeKubeconfig, k3sKubeconfig, getenv = "", K3sKubeconfig, os.Getenv })
			cfg, source, err := tt.opts.RESTConfig()
			if tt.wantErr != "" {
				var ue *UnreachableError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &ue) {
					t.Fatalf("err = %v, want an UnreachableError containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tt.wantHost || source != tt.source {
				t.Errorf("host %s from %s, want %s from %s", cfg.Host, source, tt.wantHost, tt.source)
			}
			if !strings.HasPrefix(cfg.UserAgent, "autodeploy/") || cfg.Timeout == 0 || cfg.QPS == 0 {
				t.Errorf("client settings: UA %q, timeout %s, QPS %v", cfg.UserAgent, cfg.Timeout, cfg.QPS)
			}
		})
	}
}

// The one line an operator reads names the knob, not Go's internals.
func TestUnreachableErrorWording(t *testing.T) {
	timeout := &UnreachableError{Server: "https://10.0.0.1:6443", Kubeconfig: "/etc/rancher/k3s/k3s.yaml",
		Err: errors.New("net/http: request canceled (Client.Timeout exceeded while awaiting headers)")}
	if got := timeout.Error(); !strings.Contains(got, "no answer within the request timeout (--request-timeout") || strings.Contains(got, "net/http") {
		t.Errorf("timeout: %s", got)
	}
	// The timeout said is the one in force: "default 30s" was said with
	// --request-timeout 2s too (issue 18, sixth pass).
	for _, tt := range []struct {
		timeout time.Duration
		want    string
	}{
		{30 * time.Second, "no answer within the request timeout of 30s (--request-timeout)"},
		{2 * time.Second, "no answer within the request timeout of 2s (--request-timeout)"},
		{1500 * time.Millisecond, "no answer within the request timeout of 1.5s (--request-timeout)"},
	} {
		c := &Clients{Config: &rest.Config{Host: "https://10.0.0.1:6443", Timeout: tt.timeout}, Source: "/root/.kube/config"}
		got := c.Classify(fmt.Errorf("Get \"https://10.0.0.1:6443/api\": %w", context.DeadlineExceeded)).Error()
		if !strings.Contains(got, tt.want) || strings.Contains(got, "default") {
			t.Errorf("timeout %s: %s\nwant it to say %q", tt.timeout, got, tt.want)
		}
	}
	refused := &UnreachableError{Server: "https://10.0.0.1:6443", Kubeconfig: "/root/.kube/config", Err: apierrors.NewUnauthorized("Unauthorized")}
	if got := refused.Error(); !strings.Contains(got, "refused the credentials of kubeconfig /root/.kube/config") {
		t.Errorf("refused: %s", got)
	}
}

// TestRESTConfigRefusesWhatIsNotAFile: --kubeconfig or KUBECONFIG naming a
// named pipe blocked in client-go's read forever, SIGTERM unheard, and
// /dev/zero filled the memory until the OOM killer took the process (issue
// 18, third pass): such a kubeconfig is refused, naming what it is.
func TestRESTConfigRefusesWhatIsNotAFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	homeKubeconfig, k3sKubeconfig = "/nonexistent", "/nonexistent"
	t.Cleanup(func() { homeKubeconfig, k3sKubeconfig, getenv = "", K3sKubeconfig, os.Getenv })
	for _, tt := range []struct {
		name string
		opts Options
		env  string
	}{
		{name: "flag", opts: Options{Kubeconfig: fifo}},
		{name: "KUBECONFIG", env: "/nonexistent:" + fifo},
	} {
		t.Run(tt.name, func(t *testing.T) {
			getenv = func(k string) string {
				if k == "KUBECONFIG" {
					return tt.env
				}
				return ""
			}
			t.Setenv("KUBECONFIG", tt.env)
			done := make(chan error, 1)
			go func() { _, _, err := tt.opts.RESTConfig(); done <- err }()
			select {
			case err := <-done:
				var ue *UnreachableError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), fifo+" is a named pipe, not a regular file") {
					t.Errorf("err = %v, want an UnreachableError saying %s is a named pipe", err, fifo)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("RESTConfig still reading a named pipe after 5s")
			}
		})
	}
}

func TestShownServer(t *testing.T) {
	for _, tt := range []struct{ server, want string }{
		{"https://10.0.0.1:6443", "https://10.0.0.1:6443"},
		{"https://admin:hunter2@10.0.0.1:6443", "https://admin:redacted@10.0.0.1:6443"},
		{"https://k8s.example/?token=abc", "https://k8s.example/?token=redacted"},
		{"https://k8s.example/#abc", "https://k8s.example/#redacted"},
		{"10.0.0.1:6443", "10.0.0.1:6443"},
		{"admin:hunter2@10.0.0.1:6443", "admin:redacted@10.0.0.1:6443"},
		{"", ""},
	} {
		if got := ShownServer(tt.server); got != tt.want {
			t.Errorf("ShownServer(%q) = %q, want %q", tt.server, got, tt.want)
		}
	}
}

// A user in the kubeconfig's server URL is sent exactly as before it was
// moved out of the URL (the header net/http's Client set from it, which
// client-go's token and basic round trippers then left alone), and no
// request's error names it any more.
func TestServerUserinfoSentAsNetHTTPWould(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"x"}}`))
	}))
	t.Cleanup(srv.Close)
	header := func(cfg *rest.Config) string {
		t.Helper()
		kc, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kc.CoreV1().Namespaces().Get(context.Background(), "x", metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
		return <-got
	}
	for _, tc := range []struct {
		name, user string
		auth       func(*rest.Config)
	}{
		{"token as user name, bearer token", "LONETOKEN", func(c *rest.Config) { c.BearerToken = "x" }},
		{"user and password, bearer token", "admin:hunter2", func(c *rest.Config) { c.BearerToken = "x" }},
		{"user and password, basic auth", "admin:hunter2", func(c *rest.Config) { c.Username, c.Password = "u", "p" }},
		{"user and password alone", "admin:hunter2", func(*rest.Config) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := &rest.Config{Host: strings.Replace(srv.URL, "http://", "http://"+tc.user+"@", 1)}
			tc.auth(before)
			after := rest.CopyConfig(before)
			moveServerUserinfo(after)
			if strings.Contains(after.Host, "@") {
				t.Fatalf("host %q still carries the user", after.Host)
			}
			if want, h := header(before), header(after); h != want || !strings.HasPrefix(h, "Basic ") {
				t.Errorf("Authorization %q, want %q as net/http sent it", h, want)
			}
		})
	}
	// Nothing to move: the config is left as it was.
	plain := &rest.Config{Host: srv.URL, BearerToken: "x"}
	moveServerUserinfo(plain)
	if plain.Host != srv.URL || header(plain) != "Bearer x" {
		t.Errorf("a server without a user changed: %q", plain.Host)
	}
}
