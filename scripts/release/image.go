package main

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"

	"github.com/autodeploy-dev/autodeploy/internal/version"
)

// The image's user: not root, and the uid distroless and ko use, which
// cluster policies (runAsNonRoot) commonly expect.
const (
	imageUser  = "65532:65532"
	certBundle = "etc/ssl/certs/ca-certificates.crt" // where Go looks first on Linux
)

// Paths of the image in the output directory: an OCI layout that `crane
// push` takes, and the same as one tar that `ctr images import` takes.
func imagePaths(o options) (dir, tar string) {
	base := filepath.Join(o.Out, "autodeploy_"+o.Version+"_oci")
	return base, base + ".tar"
}

// caBundle is the Mozilla (NSS) roots that golang.org/x/crypto/x509roots/
// fallback embeds, as PEM: pinned in go.mod, so the image does not depend
// on the build machine's certificates. Roots with a distrust date are left
// out: a PEM file cannot carry the constraint.
func caBundle() []byte {
	var b bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint == nil {
			_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
		}
	}
	return b.Bytes()
}

// buildImage writes a multi-arch OCI image index: per target, one layer
// over an empty base with the static binary at /usr/bin/autodeploy, CA
// certificates (for the webhooks and the API server), a passwd entry for
// the non-root user and /tmp. Created is the commit's time.
func buildImage(o options, bins map[target][]byte) error {
	certs := caBundle()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, t := range o.Targets {
		img, err := imageFor(o, t, bins[t], certs)
		if err != nil {
			return fmt.Errorf("image for linux/%s: %w", t.Name(), err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: t.GOARCH, Variant: t.Variant}},
		})
	}
	dir, tarPath := imagePaths(o)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	// containerd names an imported image after io.containerd.image.name;
	// the OCI spec's ref.name is the tag.
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.Version,
		"io.containerd.image.name":          version.ImageRepository + ":" + o.Version,
	})); err != nil {
		return err
	}
	return tarDir(dir, tarPath, o)
}

func imageFor(o options, t target, bin, certs []byte) (v1.Image, error) {
	var layerTar bytes.Buffer
	err := writeTar(&layerTar, []entry{
		{Name: "usr/bin/autodeploy", Mode: 0o755, Body: bin},
		{Name: certBundle, Mode: 0o644, Body: certs},
		{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{Name: "home/nonroot", Mode: 0o755, Dir: true},
		{Name: "tmp", Mode: 0o1777, Dir: true},
	}, o.Date)
	if err != nil {
		return nil, err
	}
	gz, err := gzipBytes(layerTar.Bytes())
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(gz)), nil }, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: o.Date}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer, History: v1.History{Created: created, CreatedBy: "scripts/release"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = "linux", t.GOARCH, t.Variant
	cf.Created = created
	cf.Config = v1.Config{
		User:       imageUser,
		Entrypoint: []string{binaryPath},
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/bin"},
		Labels: map[string]string{
			"org.opencontainers.image.title":    "autodeploy",
			"org.opencontainers.image.version":  o.Version,
			"org.opencontainers.image.revision": o.Commit,
			"org.opencontainers.image.created":  o.Date.Format("2006-01-02T15:04:05Z"),
			"org.opencontainers.image.source":   "https://github.com/autodeploy-dev/autodeploy",
			"org.opencontainers.image.licenses": "Apache-2.0",
		},
	}
	return mutate.ConfigFile(img, cf)
}

// tarDir packs an OCI layout directory into one reproducible tar.
func tarDir(dir, dst string, o options) error {
	var entries []entry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		e, err := file(filepath.ToSlash(rel), p, 0o644)
		entries = append(entries, e)
		return err
	})
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := writeTar(&b, entries, o.Date); err != nil {
		return err
	}
	return os.WriteFile(dst, b.Bytes(), 0o644)
}
