// Package kube builds the Kubernetes clients autodeploy uses, from the same
// sources kubectl reads, without ever prompting (cron has no terminal).
package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/version"
)

// K3sKubeconfig is where k3s writes its admin kubeconfig. It is the last
// resort when no kubeconfig is named and none is found where kubectl looks,
// because that is the usual state of a k3s host's root crontab.
const K3sKubeconfig = "/etc/rancher/k3s/k3s.yaml"

// Where kubectl and k3s keep kubeconfigs; variables so tests can move them.
var (
	homeKubeconfig = clientcmd.RecommendedHomeFile
	k3sKubeconfig  = K3sKubeconfig
	getenv         = os.Getenv
)

// Options select the cluster, as kubectl's flags of the same names do.
type Options struct {
	Kubeconfig string // --kubeconfig; empty means KUBECONFIG, ~/.kube/config, in-cluster, then k3s
	Context    string // --context
	// Timeout bounds each request; a hung API server must not hang cron.
	Timeout time.Duration
}

// Clients are the typed and dynamic clients of one cluster. Flux objects are
// read through the dynamic client so that no Flux Go module pins the API
// versions autodeploy understands.
type Clients struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	Config  *rest.Config
	// Source names the kubeconfig used (or "in-cluster"), for error messages.
	Source string
}

// RESTConfig resolves the rest.Config and says where it came from.
func (o Options) RESTConfig() (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	source := ""
	switch {
	case o.Kubeconfig != "":
		rules.ExplicitPath = o.Kubeconfig
		source = o.Kubeconfig
	case getenv(clientcmd.RecommendedConfigPathEnvVar) != "":
		source = getenv(clientcmd.RecommendedConfigPathEnvVar)
	case fileExists(homeKubeconfig):
		rules.ExplicitPath = homeKubeconfig
		source = homeKubeconfig
	case getenv("KUBERNETES_SERVICE_HOST") != "":
		source = "in-cluster"
	case fileExists(k3sKubeconfig):
		rules.ExplicitPath = k3sKubeconfig
		source = k3sKubeconfig
	}
	// client-go reads every file named, to its end: a named pipe blocked
	// that read forever (SIGTERM unheard) and /dev/zero filled the memory.
	paths := filepath.SplitList(getenv(clientcmd.RecommendedConfigPathEnvVar))
	if rules.ExplicitPath != "" {
		paths = []string{rules.ExplicitPath}
	}
	for _, p := range paths {
		if err := config.CheckFile(p); err != nil {
			return nil, source, &UnreachableError{Kubeconfig: source, Err: fmt.Errorf("kubeconfig %w", err)}
		}
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.Context}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) && source != "" && source != "in-cluster" {
			// A kubeconfig was named (or found) and holds nothing: it was
			// "(kubeconfig none): no kubeconfig found (tried ...); pass
			// --kubeconfig", the file passed unnamed, and with KUBECONFIG
			// set client-go tries nothing else (issue 18, ninth pass).
			what := "it holds no cluster, user or context"
			if !slices.ContainsFunc(paths, fileExists) {
				what = "it does not exist or holds no cluster, user or context" // client-go skips a missing file of KUBECONFIG
			}
			fix := "pass --kubeconfig a kubeconfig of the cluster"
			if o.Kubeconfig == "" && getenv(clientcmd.RecommendedConfigPathEnvVar) != "" {
				fix = "set KUBECONFIG to a kubeconfig of the cluster, or unset it"
			}
			return nil, source, &UnreachableError{Kubeconfig: source, Err: errors.New(what + ": " + fix)}
		}
		if clientcmd.IsEmptyConfig(err) {
			return nil, "", &UnreachableError{Kubeconfig: "none", Err: errors.New("no kubeconfig found (tried --kubeconfig, KUBECONFIG, ~/.kube/config, in-cluster, " + k3sKubeconfig + "); pass --kubeconfig")}
		}
		return nil, source, &UnreachableError{Kubeconfig: source, Err: err}
	}
	if source == "" {
		source = "in-cluster"
	}
	cfg.UserAgent = version.UserAgent()
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return answerLimit{rt} })
	moveServerUserinfo(cfg)
	// A run reads a handful of lists, then asks Flux to rescan with one small
	// PATCH per ImageRepository and ImagePolicy: kubectl's burst (300) lets
	// that through at once for a few hundred services, and the steady rate
	// keeps a runaway loop from hammering the server.
	cfg.QPS = 100
	cfg.Burst = 300
	cfg.Timeout = o.Timeout
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	return cfg, source, nil
}

// moveServerUserinfo takes a user name and password out of the kubeconfig's
// server URL (https://user:pw@host, or a lone token as user name) and sends
// them as net/http would. Go's url.Error quotes every request's URL, and
// hides a password as *** but a lone user name not at all: a request a
// signal interrupted put the token whole on the command's line and in the
// log, and every caller had to redact it (issue 18, eighth pass). Without
// it in the URL, no error of any request names it.
//
// net/http's Client sets "Authorization: Basic" from the URL's user
// before any round tripper runs, and client-go's token, basic and exec
// round trippers leave a request alone that has an Authorization header:
// the URL's user wins. This round tripper runs after them (Wrap is nearest
// the wire) and sets it unconditionally: the same header on the wire.
func moveServerUserinfo(cfg *rest.Config) {
	u, err := url.Parse(cfg.Host)
	if err != nil || u.User == nil || (u.Scheme != "http" && u.Scheme != "https") {
		return
	}
	user := u.User
	u.User = nil
	cfg.Host = u.String()
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return serverUserinfo{next: rt, user: user} })
}

type serverUserinfo struct {
	next http.RoundTripper
	user *url.Userinfo
}

func (s serverUserinfo) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	pw, _ := s.user.Password()
	r.SetBasicAuth(s.user.Username(), pw)
	return s.next.RoundTrip(r)
}

// New builds the clients. It makes no request: reachability is judged by the
// first real call, through Classify.
func New(o Options) (*Clients, error) {
	cfg, source, err := o.RESTConfig()
	if err != nil {
		return nil, err
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, &UnreachableError{Server: cfg.Host, Kubeconfig: source, Err: err}
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, &UnreachableError{Server: cfg.Host, Kubeconfig: source, Err: err}
	}
	return &Clients{Kube: kc, Dynamic: dc, Config: cfg, Source: source}, nil
}

// WatchDynamic is the dynamic client for long watches: its requests carry
// no client-side timeout. With the request timeout (30 s) every watch was
// cut after 30 s: the client sends it as timeout=30s and the API server
// ends the watch then (scripts/bench --watch-idle's audit log: a watch
// request every 30 s, where informers ask for 5-10 minutes with
// timeoutSeconds). The API server still ends each watch at its
// timeoutSeconds, and client-go's HTTP/2 health check (a ping after 30 s
// without a frame) notices a connection that died. Its other requests,
// the informers' LISTs, keep the request timeout (listDeadline): a server
// that takes a connection and never answers would otherwise stall a
// re-list, and the watch with it, for good.
func (c *Clients) WatchDynamic() (dynamic.Interface, error) {
	if c.Config == nil {
		return c.Dynamic, nil
	}
	cfg := rest.CopyConfig(c.Config)
	if limit := cfg.Timeout; limit > 0 {
		cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &listDeadline{next: rt, limit: limit} })
	}
	cfg.Timeout = 0
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, &UnreachableError{Server: cfg.Host, Kubeconfig: c.Source, Err: err}
	}
	return dc, nil
}

// listDeadline gives every request but a watch (?watch=true) a deadline
// of limit, until its body is read and closed, as the client's Timeout
// would.
type listDeadline struct {
	next  http.RoundTripper
	limit time.Duration
}

func (l *listDeadline) RoundTrip(r *http.Request) (*http.Response, error) {
	if w := r.URL.Query().Get("watch"); w == "true" || w == "1" {
		return l.next.RoundTrip(r)
	}
	ctx, cancel := context.WithTimeout(r.Context(), l.limit)
	resp, err := l.next.RoundTrip(r.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose ends a request's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// UnreachableError means the cluster could not be used at all: no
// kubeconfig, a server that does not answer, or credentials it refuses.
type UnreachableError struct {
	Server     string
	Kubeconfig string
	Err        error
	// Timeout is the request timeout in force (Classify sets it), said
	// when the server did not answer within it.
	Timeout time.Duration
}

func (e *UnreachableError) Error() string {
	server := ShownServer(e.Server)
	if apierrors.IsUnauthorized(e.Err) {
		return fmt.Sprintf("the Kubernetes API at %s refused the credentials of kubeconfig %s (%s): renew the token or certificate, or choose another --kubeconfig/--context", server, e.Kubeconfig, config.RedactIn(e.Err.Error(), e.Server))
	}
	if e.Server == "" {
		return fmt.Sprintf("cannot use the cluster (kubeconfig %s): %v", e.Kubeconfig, e.Err)
	}
	return fmt.Sprintf("cannot reach the Kubernetes API at %s (kubeconfig %s): %s", server, e.Kubeconfig, e.Reason())
}

// Reason is the error without the server and kubeconfig it names, for a
// line that names them already (the watch's lost line named them twice;
// issue 18, seventh pass).
func (e *UnreachableError) Reason() string {
	if apierrors.IsUnauthorized(e.Err) {
		return fmt.Sprintf("it refused the credentials (%s): renew the token or certificate, or choose another --kubeconfig/--context", config.RedactIn(e.Err.Error(), e.Server))
	}
	why := config.RedactIn(e.Err.Error(), e.Server)
	if apierrors.IsServiceUnavailable(e.Err) {
		why = "it answers 503 Service Unavailable (" + why + "): the API server is starting or overloaded, or a proxy in front of it has no backend; try again later, or check the server"
	}
	if errors.Is(e.Err, context.DeadlineExceeded) || strings.Contains(why, "Client.Timeout exceeded") {
		// net/http's wording names Go internals; the operator's knob is
		// --request-timeout.
		// "default 30s" was said with --request-timeout 2s too (issue 18,
		// sixth pass): the value in force, when known.
		of := ""
		if e.Timeout > 0 {
			of = " of " + e.Timeout.String()
		}
		why = "no answer within the request timeout" + of + " (--request-timeout)"
	}
	return why
}

// ShownServer is a kubeconfig's server as it may be shown: a password, a
// token in its query or fragment redacted (https://admin:pw@host and
// ?token=... were printed whole in every error naming the server, and in
// the log; issue 18, fourth pass). A server without a scheme
// (host:port) is redacted as https://host:port would be.
func ShownServer(server string) string {
	if server == "" {
		return ""
	}
	if _, err := url.Parse(server); err != nil {
		if u, err := url.Parse("https://" + server); err == nil && u.Host != "" {
			return strings.TrimPrefix(config.RedactURL("https://"+server), "https://")
		}
	}
	return config.RedactURL(server)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// maxAnswerBytes bounds the body of one answer (a watch's stream aside).
// client-go reads a body to its end before decoding it: a server or proxy
// streaming one without end filled the memory (1.6 GB in 3 s, "fatal
// error: out of memory"; issue 18, fourth pass). The largest answers
// autodeploy asks for are a namespace's ReplicaSets or Pods, a few MB for
// thousands; the bound is far above that. Tests lower it.
var maxAnswerBytes int64 = 256 << 20

// AnswerTooLargeError is an answer cut at maxAnswerBytes.
type AnswerTooLargeError struct{ Limit int64 }

func (e *AnswerTooLargeError) Error() string {
	return fmt.Sprintf("it answered more than %d MiB to one request, far more than the Kubernetes API answers autodeploy's requests: is the kubeconfig's server another server, or a proxy misbehaving?", e.Limit>>20)
}

// answerLimit cuts every answer's body at maxAnswerBytes, except a
// watch's: a stream of events by design, read one event at a time.
type answerLimit struct{ rt http.RoundTripper }

func (l answerLimit) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err != nil || resp.Body == nil || req.URL.Query().Get("watch") == "true" {
		return resp, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, limit: maxAnswerBytes}
	return resp, nil
}

type limitedBody struct {
	io.ReadCloser
	read, limit int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.read > b.limit {
		return 0, &AnswerTooLargeError{Limit: b.limit}
	}
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	if b.read > b.limit {
		return 0, &AnswerTooLargeError{Limit: b.limit}
	}
	return n, err
}
