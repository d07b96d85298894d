package fluxsim

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// gitHTTP serves one bare repository over git's smart HTTP protocol
// (https://git-scm.com/docs/http-protocol), stateless, with go-git's own
// upload-pack and receive-pack. The GitRepository CRD accepts only
// http(s):// and ssh:// URLs (spec.url pattern ^(http|https|ssh)://.*$),
// so the repository needs a server; fluxcd/pkg/gittestserver would be one,
// but it runs the git binary (through gitkit), which the test bed does
// not otherwise need.
type gitHTTP struct {
	dir string // the bare repository
}

// Load implements server.Loader: every endpoint is the one repository.
func (s gitHTTP) Load(*transport.Endpoint) (storer.Storer, error) {
	return filesystem.NewStorage(osfs.New(s.dir), cache.NewObjectLRUDefault()), nil
}

// serveGit serves dir on a loopback port until ctx ends and returns the
// repository's URL.
func serveGit(ctx context.Context, dir string) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: gitHTTP{dir: dir}}
	go func() { _ = srv.Serve(l) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return fmt.Sprintf("http://%s/flux-system.git", l.Addr()), nil
}

func (s gitHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &responseWriter{ResponseWriter: w}
	if err := s.serve(rw, r); err != nil && !rw.wrote {
		// Once the body has started, the client sees a truncated stream.
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// responseWriter records whether the response has started.
type responseWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *responseWriter) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (s gitHTTP) serve(w http.ResponseWriter, r *http.Request) error {
	ep, err := transport.NewEndpoint("http://" + r.Host + r.URL.Path)
	if err != nil {
		return err
	}
	srv := server.NewServer(s)
	body := r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		if body, err = gzip.NewReader(r.Body); err != nil {
			return err
		}
	}
	ctx := r.Context()
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs"):
		service := r.URL.Query().Get("service")
		var ar *packp.AdvRefs
		switch service {
		case transport.UploadPackServiceName:
			sess, err := srv.NewUploadPackSession(ep, nil)
			if err != nil {
				return err
			}
			ar, err = sess.AdvertisedReferencesContext(ctx)
			if err != nil {
				return err
			}
		case transport.ReceivePackServiceName:
			sess, err := srv.NewReceivePackSession(ep, nil)
			if err != nil {
				return err
			}
			ar, err = sess.AdvertisedReferencesContext(ctx)
			if err != nil {
				return err
			}
		default:
			http.Error(w, "only the smart protocol is served", http.StatusForbidden)
			return nil
		}
		ar.Prefix = [][]byte{[]byte("# service=" + service), pktline.Flush}
		w.Header().Set("Content-Type", "application/x-"+service+"-advertisement")
		w.Header().Set("Cache-Control", "no-cache")
		return ar.Encode(w)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/"+transport.UploadPackServiceName):
		sess, err := srv.NewUploadPackSession(ep, nil)
		if err != nil {
			return err
		}
		req := packp.NewUploadPackRequest()
		if err := req.Decode(body); err != nil {
			return err
		}
		resp, err := sess.UploadPack(ctx, req)
		if err != nil {
			return err
		}
		defer resp.Close()
		w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
		return resp.Encode(w)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/"+transport.ReceivePackServiceName):
		sess, err := srv.NewReceivePackSession(ep, nil)
		if err != nil {
			return err
		}
		req := packp.NewReferenceUpdateRequest()
		if err := req.Decode(body); err != nil {
			return err
		}
		rs, err := sess.ReceivePack(ctx, req)
		if rs == nil {
			return err
		}
		// A refused update is reported in the status, as git does.
		w.Header().Set("Content-Type", "application/x-git-receive-pack-result")
		return rs.Encode(w)
	}
	_, _ = io.Copy(io.Discard, body)
	http.NotFound(w, r)
	return nil
}
