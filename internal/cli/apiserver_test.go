package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// misbehavingServer plays an API server on loopback with handler, and
// returns a kubeconfig naming it.
func misbehavingServer(t *testing.T, handler http.HandlerFunc) (kubeconfig, server string) {
	return misbehavingServerAs(t, handler, "")
}

// misbehavingServerAs is misbehavingServer with the kubeconfig naming the
// server with scheme (such as "https" for a plain-HTTP port) unless "".
func misbehavingServerAs(t *testing.T, handler http.HandlerFunc, scheme string) (kubeconfig, server string) {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	server = srv.URL
	if scheme != "" {
		server = scheme + strings.TrimPrefix(server, "http")
	}
	p := filepath.Join(t.TempDir(), "kubeconfig")
	kc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "` + server + `", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, server
}

// cutAnswer starts a JSON answer and closes the connection before its
// Content-Length: a proxy's timeout, an API server restarting mid-answer.
func cutAnswer(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "4096")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(`{"kind":"Deploym`))
	w.(http.Flusher).Flush()
	panic(http.ErrAbortHandler)
}

// API servers that answer, but wrongly (issue 18, item 5): a server
// answering 503 to everything (a control plane starting, a load balancer
// with no backend) is a cluster that cannot be used, exit 3, named with its
// kubeconfig; it exited 1, "an unexpected error", naming neither. A
// discovery refused with 403 is RBAC, exit 9, saying what was refused; it
// printed "Error: unknown".
func TestMisbehavingAPIServer(t *testing.T) {
	cfg, _ := writeConfig(t, "")
	unavailable := func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream connect error", http.StatusServiceUnavailable)
	}
	discoveryForbidden := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api" || r.URL.Path == "/apis" || strings.HasPrefix(r.URL.Path, "/apis/") && strings.Count(r.URL.Path, "/") <= 3 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"forbidden: User \"x\" cannot get path \"` + r.URL.Path + `\"","reason":"Forbidden","code":403}`))
			return
		}
		http.NotFound(w, r)
	}
	versionForbidden := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/version" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"forbidden: User \"x\" cannot get path \"/version\"","reason":"Forbidden","code":403}`))
			return
		}
		http.NotFound(w, r)
	}
	discoveryForbiddenVersionOK := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/version" {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"major":"1","minor":"31","gitVersion":"v1.31.0"}`))
			return
		}
		discoveryForbidden(w, r)
	}
	answering := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { http.Error(w, "<html>oops</html>", code) }
	}
	html := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html><body>Welcome to nginx!</body></html>"))
	}
	// A proxy in front of the API (an authenticating proxy, a WAF, an
	// ingress with an allow list) refusing with its own page: no Status,
	// so not RBAC; it was shown bare ("Error: forbidden: <html>...").
	proxyForbidden := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte("<html><head><title>403 Forbidden</title></head><body><center><h1>403 Forbidden</h1></center><hr><center>nginx</center></body></html>"))
	}
	// Bytes that are no JSON, as JSON: run's discovery said so, but the
	// typed clients' "couldn't get version/kind; json parse error" was
	// shown bare, exit 1 (issue 18, fourth pass).
	garbage := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("\x00\x01\x02garbage"))
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		scheme  string
		args    []string
		code    ExitCode
		// says is in the output; $SERVER and $KUBECONFIG stand for the
		// server's URL and the kubeconfig's path.
		says []string
	}{
		{"503 run", unavailable, "", []string{"run"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "503 Service Unavailable"}},
		{"503 status", unavailable, "", []string{"status"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "503 Service Unavailable"}},
		{"503 rollback", unavailable, "", []string{"rollback", "api"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "503 Service Unavailable"}},
		{"503 hold", unavailable, "", []string{"hold", "api", "--reason", "x"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "503 Service Unavailable"}},
		{"503 doctor", unavailable, "", []string{"doctor"}, ExitError, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "503 Service Unavailable"}},
		// Issue 18 review item 4: a kubeconfig naming https:// for a
		// plain-HTTP port, and a web server's page where the API should
		// be, name the server and the kubeconfig, exit 3.
		{"https to plain HTTP run", unavailable, "https", []string{"run"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "HTTP response to HTTPS client"}},
		{"https to plain HTTP status", unavailable, "https", []string{"status"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "HTTP response to HTTPS client"}},
		{"500 run", answering(500), "", []string{"run"}, ExitError, []string{"the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG) answered: an error on the server"}},
		{"429 run", answering(429), "", []string{"run"}, ExitError, []string{"the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG) answered: the server has received too many requests"}},
		{"404 run", answering(404), "", []string{"run"}, ExitError, []string{"the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG) answered: the server could not find the requested resource"}},
		{"500 status", answering(500), "", []string{"status"}, ExitError, []string{"the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG) answered: "}},
		{"HTML run", html, "", []string{"run"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "not as the Kubernetes API does"}},
		{"HTML status", html, "", []string{"status"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "not as the Kubernetes API does"}},
		{"garbage run", garbage, "", []string{"run"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "not as the Kubernetes API does"}},
		{"garbage status", garbage, "", []string{"status"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "not as the Kubernetes API does"}},
		{"garbage hold", garbage, "", []string{"hold", "api", "--reason", "x"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "not as the Kubernetes API does"}},
		{"garbage rollback", garbage, "", []string{"rollback", "api"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "not as the Kubernetes API does"}},
		{"proxy 403 run", proxyForbidden, "", []string{"run"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "403 Forbidden", "not the Kubernetes API's", "fix:"}},
		{"proxy 403 status", proxyForbidden, "", []string{"status"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "403 Forbidden", "not the Kubernetes API's", "fix:"}},
		{"proxy 403 rollback", proxyForbidden, "", []string{"rollback", "api"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "403 Forbidden", "not the Kubernetes API's", "fix:"}},
		{"proxy 403 hold", proxyForbidden, "", []string{"hold", "api", "--reason", "x"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "403 Forbidden", "not the Kubernetes API's", "fix:"}},
		{"proxy 403 doctor", proxyForbidden, "", []string{"doctor"}, ExitError, []string{"$SERVER", "$KUBECONFIG", "403 Forbidden", "not the Kubernetes API's"}},
		// Issue 18 review item 4: doctor names what is refused and the
		// RBAC fix, not "unknown" or "install Flux".
		// The Status's message, not its JSON, and the RBAC fix, not
		// "check that the cluster runs" (issue 18, sixth pass).
		{"version 403 doctor", versionForbidden, "", []string{"doctor"}, ExitError, []string{`the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG) refused GET /version (403 Forbidden): forbidden: User "x" cannot get path "/version"`, "fix: grant get on /version (the system:public-info-viewer ClusterRole grants it)"}},
		// A 500 of /version is no refusal; said so, and the server named
		// once (it was twice, Classify's AnswerError around the doctor's
		// own naming; issue 18, seventh pass).
		{"version 500 doctor", answering(500), "", []string{"doctor"}, ExitError, []string{"the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG) answered GET /version with 500 Internal Server Error"}},
		{"discovery 403 doctor", discoveryForbiddenVersionOK, "", []string{"doctor"}, ExitError, []string{"refused discovery of its API groups", "fix: grant get on /api and /apis"}},
		// An answer cut short was exit 1, client-go's "unexpected error
		// when reading response body. Please retry." naming neither server
		// nor kubeconfig (issue 18, fifth pass): the cluster could not be
		// used, exit 3.
		{"cut run", cutAnswer, "", []string{"run"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "answer was cut short"}},
		{"cut status", cutAnswer, "", []string{"status"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "answer was cut short"}},
		{"cut hold", cutAnswer, "", []string{"hold", "api", "--reason", "x"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "answer was cut short"}},
		{"cut history", cutAnswer, "", []string{"history", "api"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "answer was cut short"}},
		{"cut forget", cutAnswer, "", []string{"forget", "api"}, ExitUnreachable, []string{"cannot reach the Kubernetes API at $SERVER (kubeconfig $KUBECONFIG)", "answer was cut short"}},
		{"discovery 403 run", discoveryForbidden, "", []string{"run"}, ExitForbidden, []string{"refused discovery of its API groups (GET /api and /apis: 403 Forbidden)", "system:discovery"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc, server := misbehavingServerAs(t, tt.handler, tt.scheme)
			code, stdout, stderr := execute(t, nil, append(tt.args, "--config", cfg, "--kubeconfig", kc, "--request-timeout", "5s")...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.code, stderr)
			}
			for _, want := range tt.says {
				want = strings.NewReplacer("$SERVER", server, "$KUBECONFIG", kc).Replace(want)
				if !strings.Contains(stderr+stdout, want) {
					t.Errorf("output %q does not say %q", stderr+stdout, want)
				}
			}
			for _, line := range strings.Split(stderr+stdout, "\n") {
				if n := strings.Count(line, server); n > 1 && !strings.Contains(line, "kubeconfig "+kc+" (server") {
					t.Errorf("the server named %d times in one line: %s", n, line)
				}
			}
			if tt.args[0] != "doctor" && strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("not one line:\n%s", stderr)
			}
		})
	}
}

// A kubeconfig's server with a password or a token in its URL
// (https://admin:pw@host, ?token=...) was shown whole wherever the server
// is named: every error line, doctor, the log (issue 18, fourth pass).
// Secrets never appear in output: the server is named redacted.
func TestKubeconfigServerSecretsNotShown(t *testing.T) {
	cfg, dir := writeConfig(t, "")
	handlers := map[string]http.HandlerFunc{
		"503": func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no backend", http.StatusServiceUnavailable)
		},
		"500": func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", http.StatusInternalServerError) },
		"proxy 403": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte("<html><title>403 Forbidden</title></html>"))
		},
	}
	for name, h := range handlers {
		for _, args := range [][]string{{"run"}, {"status"}, {"rollback", "api"}, {"hold", "api", "--reason", "x"}, {"doctor"}} {
			t.Run(name+" "+args[0], func(t *testing.T) {
				_, server := misbehavingServer(t, h)
				secret := strings.Replace(server, "http://", "http://admin:hunter2@", 1) + "/?token=qs-secret"
				kc := filepath.Join(t.TempDir(), "kubeconfig")
				body := "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"" + secret + "\"}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
				if err := os.WriteFile(kc, []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
				code, stdout, stderr := execute(t, nil, append(args, "--config", cfg, "--kubeconfig", kc, "--request-timeout", "5s")...)
				logged, _ := os.ReadFile(filepath.Join(dir, "autodeploy.log"))
				all := stdout + stderr + string(logged)
				if code == ExitOK || strings.Contains(all, "hunter2") || strings.Contains(all, "qs-secret") {
					t.Errorf("exit %d; a secret of the server's URL is shown:\n%s", code, all)
				}
				if !strings.Contains(stdout+stderr, strings.TrimPrefix(server, "http://")) {
					t.Errorf("the server is not named:\n%s", stdout+stderr)
				}
			})
		}
	}
}

// A request a signal interrupted was shown as Go's url.Error, the server's
// URL with its user name whole ('Get "http://LONETOKEN@host/...":
// interrupted'): a lone user name is a token, which every other line
// shows redacted (issue 18, seventh pass).
//
// The log file's "<command> failed" line showed it too, raw (issue 18,
// eighth pass: 'error="Get \"http://LONETOKEN@host/...\": interrupted').
func TestInterruptedRequestShowsNoServerSecret(t *testing.T) {
	for _, args := range [][]string{{"status"}, {"history", "api"}, {"hold", "api", "--reason", "x"}, {"resume", "api"}, {"forget", "api"}, {"rollback", "api"}, {"hold", "--all", "--reason", "x"}, {"resume", "--all"}, {"run"}, {"doctor"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			cfg, dir := writeConfig(t, "")
			arrived := make(chan struct{}, 1)
			_, server := misbehavingServer(t, func(w http.ResponseWriter, r *http.Request) {
				select {
				case arrived <- struct{}{}:
				default:
				}
				<-r.Context().Done()
			})
			for _, user := range []string{"LONETOKEN", "admin:hunter2"} {
				kc := filepath.Join(t.TempDir(), "kubeconfig")
				body := "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"" + strings.Replace(server, "http://", "http://"+user+"@", 1) + "\"}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
				if err := os.WriteFile(kc, []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancelCause(context.Background())
				go func() { <-arrived; cancel(errInterrupted) }()
				var out, errOut bytes.Buffer
				f := NewFactory(IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, func(string) string { return "" })
				code := Execute(ctx, f, append(args, "--config", cfg, "--kubeconfig", kc))
				cancel(nil)
				// status and history open no log.
				logged, err := os.ReadFile(filepath.Join(dir, "autodeploy.log"))
				if err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				all := out.String() + errOut.String() + string(logged)
				if code != ExitInterrupted || strings.Contains(all, "LONETOKEN") || strings.Contains(all, "hunter2") || strings.Contains(all, "***") {
					t.Errorf("exit %d; the server's user info is shown:\n%s", code, all)
				}
				if !strings.Contains(all, "interrupted") {
					t.Errorf("does not say it was interrupted:\n%s", all)
				}
			}
		})
	}
}
