package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
)

// Classify turns a transport-level failure of a request into an
// *UnreachableError naming the server and kubeconfig, so that the operator
// sees one line saying which cluster could not be reached. API errors that
// the server did answer (not found, conflict, ...) pass through unchanged.
func (c *Clients) Classify(err error) error {
	if err == nil {
		return err
	}
	if !IsUnreachable(err) {
		if unexpectedAnswer(err) {
			return &AnswerError{Server: c.Config.Host, Kubeconfig: c.Source, Err: err}
		}
		return err
	}
	var ue *UnreachableError
	if errors.As(err, &ue) {
		return err
	}
	cause := rootCause(err)
	var big *AnswerTooLargeError
	if errors.As(err, &big) {
		cause = big
	} else if page, ok := proxyRefusal(err); ok {
		cause = fmt.Errorf("it answered 403 Forbidden with a page that is not the Kubernetes API's (%q): a proxy or web server in front of the API refused the request, not RBAC; fix: check that the kubeconfig's server is the API's address, and that this host and the kubeconfig's credentials may pass that proxy", page)
	} else if errors.Is(err, io.ErrUnexpectedEOF) {
		cause = fmt.Errorf("its answer was cut short (%v): the connection closed before the whole answer came (a proxy's timeout, the API server restarting); try again", io.ErrUnexpectedEOF)
	} else if notAPI(err) {
		cause = fmt.Errorf("it answered, but not as the Kubernetes API does (%v): is the kubeconfig's server another web server, or a proxy's page?", cause)
	}
	return &UnreachableError{Server: c.Config.Host, Kubeconfig: c.Source, Err: cause, Timeout: c.Config.Timeout}
}

// AnswerError is an answer of the server that a command cannot go on
// from and that names nothing of the cluster: a 500 or 429, or a 404 with
// client-go's generic text (what a web server that is not the API gives).
// It names the server and kubeconfig (issue 18, review item 4) and
// unwraps to the answer, whose exit code it keeps.
type AnswerError struct {
	Server, Kubeconfig string
	Err                error
}

func (e *AnswerError) Error() string {
	return fmt.Sprintf("the Kubernetes API at %s (kubeconfig %s) answered: %s", ShownServer(e.Server), e.Kubeconfig, config.RedactIn(e.Err.Error(), e.Server))
}

// Reason is the answer without the server and kubeconfig, as
// UnreachableError's.
func (e *AnswerError) Reason() string {
	return "it answered: " + config.RedactIn(e.Err.Error(), e.Server)
}

func (e *AnswerError) Unwrap() error { return e.Err }

// unexpectedAnswer reports whether err is an answer for AnswerError.
func unexpectedAnswer(err error) bool {
	var ae *AnswerError
	if errors.As(err, &ae) {
		return false
	}
	switch {
	case apierrors.IsInternalError(err), apierrors.IsTooManyRequests(err), apierrors.IsUnexpectedServerError(err):
		return true
	case apierrors.IsNotFound(err):
		// A real API server's 404 names what is missing.
		return strings.Contains(err.Error(), "the server could not find the requested resource")
	}
	return false
}

// notAPI reports whether err is an answer no Kubernetes API gives: a page
// of HTML or other garbage where JSON was wanted (issue 18, review item 4;
// it printed "invalid character '<'..." naming neither server nor
// kubeconfig).
func notAPI(err error) bool {
	var (
		syn *json.SyntaxError
		neg runtime.NegotiateError
	)
	if errors.As(err, &syn) || errors.As(err, &neg) {
		return true
	}
	// client-go turns the NegotiateError of a body it cannot decode into
	// a StatusError carrying only its text, and apimachinery's JSON
	// serializer formats the SyntaxError of a body sent as JSON with %v
	// (status, hold and rollback showed it bare, exit 1; issue 18, fourth
	// pass).
	msg := err.Error()
	return strings.Contains(msg, "serializer for ") && strings.Contains(msg, " doesn't exist") ||
		strings.Contains(msg, "couldn't get version/kind; json parse error")
}

// proxyRefusal reports whether err is a 403 whose body is text (HTML, a
// plain message), and returns that body's title or start: the API server
// says every refusal in a Status (JSON or protobuf) naming who may not do
// what (RBAC, exit 9), so a page in its place is a proxy in front of it
// (an authenticating proxy, an ingress's allow list, a WAF) refusing. It
// was shown bare, the whole HTML page in the message (issue 18, fourth
// pass). client-go marks an answer it could not read as a Status with an
// UnexpectedServerResponse cause, whose message is the body when it was
// text/* and "unknown" otherwise: the discovery client reads the API's own
// 403 so (flux.DiscoveryRefusedError), and a proxy's JSON that is not a
// Status reads the same, so only a text body tells.
func proxyRefusal(err error) (string, bool) {
	var se apierrors.APIStatus
	if !apierrors.IsForbidden(err) || !apierrors.IsUnexpectedServerError(err) || !errors.As(err, &se) {
		return "", false
	}
	page := se.Status().Message
	if page == "unknown" {
		return "", false
	}
	if _, rest, ok := strings.Cut(page, "<title>"); ok {
		page, _, _ = strings.Cut(rest, "</title>")
	}
	page = strings.Join(strings.Fields(page), " ")
	if r := []rune(page); len(r) > 80 {
		page = string(r[:80]) + "..."
	}
	return page, true
}

func proxyRefused(err error) bool {
	_, ok := proxyRefusal(err)
	return ok
}

// plainHTTP reports whether an https:// server answered in plain HTTP: a
// kubeconfig naming the wrong port or scheme. net/http has no type for it.
func plainHTTP(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// IsUnreachable reports whether err means the API server could not be used:
// no connection, TLS failure, a timeout, refused credentials, a proxy's
// refusal, or 503.
func IsUnreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var (
		ue    *UnreachableError
		big   *AnswerTooLargeError
		op    *net.OpError
		dns   *net.DNSError
		unk   x509.UnknownAuthorityError
		host  x509.HostnameError
		inval x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &ue), errors.As(err, &big), errors.As(err, &op), errors.As(err, &dns),
		errors.As(err, &unk), errors.As(err, &host), errors.As(err, &inval),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, context.DeadlineExceeded):
		return true
	case apierrors.IsUnauthorized(err):
		return true
	case notAPI(err), plainHTTP(err):
		// Not the Kubernetes API at that address, as a closed port is
		// not: the kubeconfig's server is wrong (issue 18, review item 4).
		return true
	case errors.Is(err, io.ErrUnexpectedEOF):
		// An answer cut short (client-go: "unexpected error when reading
		// response body"): the connection closed mid-answer, and the
		// cluster could not be used, as when it closes before one. It was
		// exit 1 naming no server (issue 18, fifth pass).
		return true
	case proxyRefused(err):
		// A proxy's refusal: the cluster cannot be used through it, as
		// with refused credentials.
		return true
	case apierrors.IsServiceUnavailable(err):
		// 503 to a request is a control plane starting or a proxy in
		// front of it with no backend: the cluster cannot be used, not
		// an unexpected error (exit 1 naming no server, issue 18 item 5).
		return true
	}
	var uerr *url.Error
	return errors.As(err, &uerr) && uerr.Timeout()
}

// rootCause strips url.Error's "Get \"https://...\":" prefix, which repeats
// the server already named by UnreachableError.
func rootCause(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}
