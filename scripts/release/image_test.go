//go:build release

package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image: an OCI index of one image per platform, each running the
// static binary as user 65532 with CA certificates; the host's binary
// inside says its version; a registry takes the layout (what crane push
// does) and the tar holds the same layout (what ctr import reads).
func TestImage(t *testing.T) {
	a, _, _ := releases(t)
	dir, tarPath := imagePaths(a)
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1 {
		t.Fatalf("index.json lists %d entries, want the release's index", len(tm.Manifests))
	}
	desc := tm.Manifests[0]
	if desc.MediaType != types.OCIImageIndex || desc.Annotations["org.opencontainers.image.ref.name"] != testVersion ||
		desc.Annotations["io.containerd.image.name"] != "ghcr.io/autodeploy-dev/autodeploy:"+testVersion {
		t.Errorf("index.json entry: %+v", desc)
	}
	idx, err := top.ImageIndex(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, m := range im.Manifests {
		platforms = append(platforms, m.Platform.String())
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cf.Config
		if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/usr/bin/autodeploy"}) || len(c.Cmd) != 0 {
			t.Errorf("%s: user %q entrypoint %q cmd %q", m.Platform, c.User, c.Entrypoint, c.Cmd)
		}
		if !cf.Created.Time.Equal(a.Date) || cf.Architecture != m.Platform.Architecture || cf.OS != "linux" {
			t.Errorf("%s: created %v arch %s os %s", m.Platform, cf.Created.Time, cf.Architecture, cf.OS)
		}
		files := imageFiles(t, img)
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(files["etc/ssl/certs/ca-certificates.crt"]) || len(pool.Subjects()) < 100 { //nolint:staticcheck // counting only
			t.Errorf("%s: CA bundle missing or small", m.Platform)
		}
		if !strings.Contains(string(files["etc/passwd"]), ":65532:65532:") {
			t.Errorf("%s: no passwd entry for 65532", m.Platform)
		}
		if m.Platform.Architecture == builds.host.GOARCH && m.Platform.Variant == builds.host.Variant {
			bin := filepath.Join(t.TempDir(), "autodeploy")
			if err := os.WriteFile(bin, files["usr/bin/autodeploy"], 0o755); err != nil {
				t.Fatal(err)
			}
			if out := run(t, bin, "version"); !strings.HasPrefix(out, "autodeploy v0.9.0 (commit "+a.Commit) {
				t.Errorf("the image's binary says %q", out)
			}
		}
	}
	if want := []string{"linux/amd64", "linux/arm64/v8", "linux/arm/v7"}; !slices.Equal(platforms, want) {
		t.Errorf("platforms %v, want %v", platforms, want)
	}

	// crane push of the layout is remote.WriteIndex; the registry stores
	// the same digest.
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://") + "/autodeploy:" + testVersion)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("pushing the index: %v", err)
	}
	got, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d != desc.Digest {
		t.Errorf("registry has %s, the layout %s", d, desc.Digest)
	}

	// The tar is the layout directory, file for file.
	tb, err := os.ReadFile(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	hs, inTar := readTar(t, bytes.NewReader(tb))
	onDisk := tree(t, dir)
	for n, b := range onDisk {
		if !bytes.Equal(inTar[filepath.ToSlash(n)], b) {
			t.Errorf("%s differs between the layout and the tar", n)
		}
	}
	regular := 0
	for _, h := range hs {
		if h.Typeflag == tar.TypeReg {
			regular++
		}
	}
	if regular != len(onDisk) {
		t.Errorf("tar has %d files, the layout %d", regular, len(onDisk))
	}
}

// imageFiles reads the files of an image's layers.
func imageFiles(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name], _ = io.ReadAll(tr)
		}
		rc.Close()
	}
	return files
}
