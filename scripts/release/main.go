// Command release builds autodeploy's release artifacts into an empty
// directory (make release: dist/): static binaries for Linux, a tarball and
// a .deb per architecture, a multi-arch OCI image, and SHA256SUMS.
//
//	go run ./scripts/release [-o dist] [-arch amd64,arm64,arm] [-version v1.2.3]
//
// Reproducible: the version and commit come from git, the date from the
// commit (or SOURCE_DATE_EPOCH), binaries are built with -trimpath and no
// build id, and every archive has sorted entries, one mtime and root as
// owner. Two builds of one commit with one Go version give the same bytes
// (scripts/release/dist_test.go checks it).
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/cli"
	"github.com/autodeploy-dev/autodeploy/internal/version"
)

// target is one platform of the release.
type target struct {
	GOARCH, GOARM string
	Deb           string // dpkg's name of the architecture
	Variant       string // the OCI platform's variant
}

// Name is the target's name in file names, as go tool dist names it.
func (t target) Name() string {
	if t.GOARM != "" {
		return t.GOARCH + "v" + t.GOARM
	}
	return t.GOARCH
}

// targets by -arch value. arm is ARMv7 (a Raspberry Pi with a 32-bit OS):
// a pure-Go build costs one more link.
var targets = map[string]target{
	"amd64": {GOARCH: "amd64", Deb: "amd64"},
	"arm64": {GOARCH: "arm64", Deb: "arm64", Variant: "v8"},
	"arm":   {GOARCH: "arm", GOARM: "7", Deb: "armhf", Variant: "v7"},
}

// options say what to build and where.
type options struct {
	Root    string // the repository
	Out     string // an empty or missing directory
	Targets []target
	Version string
	Commit  string
	Date    time.Time
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err == nil {
		err = release(o, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	o := options{}
	var arches string
	fs.StringVar(&o.Root, "root", ".", "repository root")
	fs.StringVar(&o.Out, "o", "dist", "output directory (must be empty or missing)")
	fs.StringVar(&arches, "arch", "amd64,arm64,arm", "architectures: amd64, arm64, arm (ARMv7)")
	fs.StringVar(&o.Version, "version", "", "version to stamp (default: git describe --tags --always --dirty)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for _, a := range strings.Split(arches, ",") {
		t, ok := targets[a]
		if !ok {
			return o, fmt.Errorf("unknown -arch %q: use amd64, arm64 or arm", a)
		}
		o.Targets = append(o.Targets, t)
	}
	return o, stamp(&o)
}

// stamp fills what git knows: the version, the commit and its time. The
// date is the commit's, not the clock's, so that a rebuild is the same.
func stamp(o *options) error {
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = o.Root
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s in %s: %w (a release is built from a git checkout)", strings.Join(args, " "), o.Root, err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	var err error
	if o.Version == "" {
		if o.Version, err = git("describe", "--tags", "--always", "--dirty"); err != nil {
			return err
		}
	}
	if o.Commit, err = git("rev-parse", "--short", "HEAD"); err != nil {
		return err
	}
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		if epoch, err = git("log", "-1", "--format=%ct", "HEAD"); err != nil {
			return err
		}
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return fmt.Errorf("SOURCE_DATE_EPOCH %q is not a Unix time: %w", epoch, err)
	}
	o.Date = time.Unix(sec, 0).UTC()
	return nil
}

// release builds everything into o.Out, logging progress to log.
func release(o options, log io.Writer) error {
	if ents, err := os.ReadDir(o.Out); err == nil && len(ents) > 0 {
		return fmt.Errorf("%s is not empty: remove it first (make release does)", o.Out)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "autodeploy-release-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	// The man pages and completions come from this process's command tree:
	// stamped with the release's version, as its binaries are.
	version.Version, version.Commit, version.Date = o.Version, o.Commit, o.Date.Format(time.RFC3339)
	docs, err := genDocs(filepath.Join(work, "docs"), o.Date)
	if err != nil {
		return err
	}
	example, err := os.ReadFile(filepath.Join(o.Root, "testdata", "config", "example.yaml"))
	if err != nil {
		return err
	}
	packaged, err := packagedConfig(example)
	if err != nil {
		return err
	}
	host, err := hostFiles(packaged)
	if err != nil {
		return err
	}
	readme, err := os.ReadFile(filepath.Join(o.Root, "README.md"))
	if err != nil {
		return err
	}
	license, err := os.ReadFile(filepath.Join(o.Root, "LICENSE"))
	if err != nil {
		return fmt.Errorf("%w (the tarballs and packages carry the licence)", err)
	}

	bins := map[target][]byte{}
	for _, t := range o.Targets {
		fmt.Fprintf(log, "building linux/%s\n", t.Name())
		bin, err := build(o, t, filepath.Join(work, t.Name(), "autodeploy"))
		if err != nil {
			return err
		}
		bins[t] = bin

		base := fmt.Sprintf("autodeploy_%s_linux_%s", o.Version, t.Name())
		entries := []entry{
			{Name: "autodeploy", Mode: 0o755, Body: bin},
			{Name: "kubectl-autodeploy", Mode: 0o777, Link: "autodeploy"},
			{Name: "README.md", Mode: 0o644, Body: readme},
			{Name: "LICENSE", Mode: 0o644, Body: license},
		}
		for _, d := range docs {
			entries = append(entries, entry{Name: d.Archive, Mode: 0o644, Body: d.Body})
		}
		for i := range entries {
			entries[i].Name = base + "/" + entries[i].Name
		}
		if err := writeTarGz(filepath.Join(o.Out, base+".tar.gz"), entries, o.Date); err != nil {
			return err
		}
		fmt.Fprintf(log, "packaging linux/%s as a .deb\n", t.Name())
		if err := buildDeb(o, t, debInputs{
			Dir: filepath.Join(work, t.Name()), Binary: bin, Config: packaged, Cron: []byte(host.Cron), WatchUnit: []byte(host.WatchUnit),
			License: license, Docs: docs,
		}); err != nil {
			return err
		}
	}
	fmt.Fprintln(log, "building the OCI image")
	if err := buildImage(o, bins); err != nil {
		return err
	}
	return writeSums(o.Out)
}

// build compiles a static binary for t, stamped; it returns its bytes.
func build(o options, t target, out string) ([]byte, error) {
	pkg := "github.com/autodeploy-dev/autodeploy/internal/version"
	ldflags := strings.Join([]string{
		"-s", "-w", "-buildid=",
		"-X", pkg + ".Version=" + o.Version,
		"-X", pkg + ".Commit=" + o.Commit,
		"-X", pkg + ".Date=" + o.Date.Format(time.RFC3339),
	}, " ")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, "./cmd/autodeploy")
	cmd.Dir = o.Root
	// Everything that changes the code generated is pinned here, whatever
	// the caller's environment says.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+t.GOARCH, "GOARM="+t.GOARM, "GOAMD64=v1", "GOARM64=v8.0", "GOEXPERIMENT=")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build for linux/%s: %w", t.Name(), err)
	}
	return os.ReadFile(out)
}

// doc is a generated man page or completion script.
type doc struct {
	Archive string // path in the tarballs
	Deb     string // path in the packages
	Body    []byte
}

// genDocs writes the man pages (gzipped in the package, as Debian has
// them) and the bash, zsh and fish completions.
func genDocs(dir string, date time.Time) ([]doc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := cli.GenMan(dir, date); err != nil {
		return nil, err
	}
	pages, err := filepath.Glob(filepath.Join(dir, "*.1"))
	if err != nil || len(pages) == 0 {
		return nil, fmt.Errorf("no man pages generated in %s: %v", dir, err)
	}
	var docs []doc
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		docs = append(docs, doc{Archive: "man/man1/" + filepath.Base(p), Deb: "/usr/share/man/man1/" + filepath.Base(p) + ".gz", Body: b})
	}
	root := cli.NewRootCmd(cli.NewFactory(cli.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard}, func(string) string { return "" }))
	for _, c := range []struct {
		archive, deb string
		gen          func(io.Writer) error
	}{
		{"completions/autodeploy.bash", "/usr/share/bash-completion/completions/autodeploy", func(w io.Writer) error { return root.GenBashCompletionV2(w, true) }},
		{"completions/_autodeploy", "/usr/share/zsh/vendor-completions/_autodeploy", root.GenZshCompletion},
		{"completions/autodeploy.fish", "/usr/share/fish/vendor_completions.d/autodeploy.fish", func(w io.Writer) error { return root.GenFishCompletion(w, true) }},
	} {
		var b bytes.Buffer
		if err := c.gen(&b); err != nil {
			return nil, err
		}
		docs = append(docs, doc{Archive: c.archive, Deb: c.deb, Body: b.Bytes()})
	}
	return docs, nil
}

// writeSums writes SHA256SUMS for the files in dir, in sha256sum's format
// (sha256sum -c SHA256SUMS checks them).
func writeSums(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var b strings.Builder
	names := []string{}
	for _, e := range ents {
		if e.Type().IsRegular() && e.Name() != "SHA256SUMS" {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return errors.New("nothing to checksum")
	}
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(sum[:]), n)
	}
	return os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(b.String()), 0o644)
}
