package kube

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Classify turns a transport-level failure of a request into an
// *UnreachableError naming the server and kubeconfig, so that the operator
// sees one line saying which cluster could not be reached. API errors that
// the server did answer (not found, conflict, ...) pass through unchanged.
func (c *Clients) Classify(err error) error {
	if err == nil || !IsUnreachable(err) {
		return err
	}
	var ue *UnreachableError
	if errors.As(err, &ue) {
		return err
	}
	return &UnreachableError{Server: c.Config.Host, Kubeconfig: c.Source, Err: rootCause(err)}
}

// IsUnreachable reports whether err means the API server could not be used:
// no connection, TLS failure, a timeout, refused credentials, or 503.
func IsUnreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var (
		ue    *UnreachableError
		op    *net.OpError
		dns   *net.DNSError
		unk   x509.UnknownAuthorityError
		host  x509.HostnameError
		inval x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &ue), errors.As(err, &op), errors.As(err, &dns),
		errors.As(err, &unk), errors.As(err, &host), errors.As(err, &inval),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, context.DeadlineExceeded):
		return true
	case apierrors.IsUnauthorized(err):
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
