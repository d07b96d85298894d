//go:build release

// The release's artifacts, built as make release builds them: go test
// -tags release ./scripts/release (scripts/test.sh runs it, so CI builds
// them without publishing). A release is built twice, to compare bytes,
// plus the host's .deb of a later version, to upgrade to.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testVersion = "v0.9.0"
	nextVersion = "v0.9.1"
)

// builds are the releases the tests share, built once.
var builds struct {
	once        sync.Once
	a, b, next  options
	err         error
	host        target
	hostPresent bool
}

func releases(t *testing.T) (a, b, next options) {
	t.Helper()
	builds.once.Do(func() {
		tmp, err := os.MkdirTemp("", "autodeploy-release-test-")
		if err != nil {
			builds.err = err
			return
		}
		// Not removed by a test's cleanup: the tests share it. The
		// process's TestMain removes it.
		testTmp = tmp
		for _, t := range targets {
			if t.GOARCH == runtime.GOARCH {
				builds.host, builds.hostPresent = t, true
			}
		}
		mk := func(dir, v string, ts []target) (options, error) {
			o := options{Root: filepath.Join("..", ".."), Out: filepath.Join(tmp, dir), Version: v, Targets: ts}
			if err := stamp(&o); err != nil {
				return o, err
			}
			var log bytes.Buffer
			if err := release(o, &log); err != nil {
				return o, errors.New(err.Error() + "\n" + log.String())
			}
			return o, nil
		}
		all := []target{targets["amd64"], targets["arm64"], targets["arm"]}
		if builds.a, builds.err = mk("a", testVersion, all); builds.err != nil {
			return
		}
		if builds.b, builds.err = mk("b", testVersion, all); builds.err != nil {
			return
		}
		if builds.hostPresent {
			builds.next, builds.err = mk("next", nextVersion, []target{builds.host})
		}
	})
	if builds.err != nil {
		t.Fatalf("make release failed: %v", builds.err)
	}
	if !builds.hostPresent {
		t.Skipf("no release target for this machine (%s)", runtime.GOARCH)
	}
	return builds.a, builds.b, builds.next
}

var testTmp string

func TestMain(m *testing.M) {
	code := m.Run()
	if testTmp != "" {
		os.RemoveAll(testTmp)
	}
	os.Exit(code)
}

// tree maps every file under dir to its bytes.
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[rel], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// Two builds of one commit give the same bytes, and SHA256SUMS lists every
// artifact with its sum.
func TestReproducible(t *testing.T) {
	a, b, _ := releases(t)
	fa, fb := tree(t, a.Out), tree(t, b.Out)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range fa {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range names {
		if !bytes.Equal(fa[n], fb[n]) {
			t.Errorf("%s differs between two builds", n)
		}
	}
	if len(fa) != len(fb) {
		t.Errorf("the builds have %d and %d files", len(fa), len(fb))
	}
	for _, want := range []string{
		"autodeploy_v0.9.0_linux_amd64.tar.gz", "autodeploy_v0.9.0_linux_arm64.tar.gz", "autodeploy_v0.9.0_linux_armv7.tar.gz",
		"autodeploy_0.9.0_amd64.deb", "autodeploy_0.9.0_arm64.deb", "autodeploy_0.9.0_armhf.deb",
		"autodeploy_v0.9.0_oci.tar", "autodeploy_v0.9.0_oci/index.json", "SHA256SUMS",
	} {
		if fa[want] == nil {
			t.Errorf("no %s in the release; it has %v", want, names)
		}
	}
	listed := 0
	for _, line := range strings.Split(strings.TrimSpace(string(fa["SHA256SUMS"])), "\n") {
		sum, file, ok := strings.Cut(line, "  ")
		got := sha256.Sum256(fa[file])
		if !ok || fa[file] == nil || hex.EncodeToString(got[:]) != sum {
			t.Errorf("SHA256SUMS line %q does not match the file", line)
		}
		listed++
	}
	if top := len(slices.DeleteFunc(slices.Clone(names), func(n string) bool { return strings.Contains(n, "/") })); listed != top-1 {
		t.Errorf("SHA256SUMS lists %d files, the release has %d besides it", listed, top-1)
	}
}

// Each tarball has the static binary for its platform, the plugin's name,
// the README, the licence, completions and man pages; sorted, one mtime,
// owned by root. The host's binary says its version.
func TestTarballs(t *testing.T) {
	a, _, _ := releases(t)
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "armv7": elf.EM_ARM}
	for _, tg := range a.Targets {
		t.Run(tg.Name(), func(t *testing.T) {
			base := "autodeploy_v0.9.0_linux_" + tg.Name()
			data, err := os.ReadFile(filepath.Join(a.Out, base+".tar.gz"))
			if err != nil {
				t.Fatal(err)
			}
			hs, bodies := readTarGz(t, data)
			var names []string
			for _, h := range hs {
				names = append(names, h.Name)
				if !h.ModTime.Equal(a.Date) || h.Uid != 0 || h.Gid != 0 || h.Uname != "root" {
					t.Errorf("%s: mtime %v uid %d gid %d %q, want %v and root", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, a.Date)
				}
			}
			if !slices.IsSortedFunc(names, func(x, y string) int {
				return slices.Compare(strings.Split(strings.TrimSuffix(x, "/"), "/"), strings.Split(strings.TrimSuffix(y, "/"), "/"))
			}) {
				t.Errorf("entries not sorted: %v", names)
			}
			for _, want := range []string{"autodeploy", "kubectl-autodeploy", "README.md", "LICENSE", "completions/autodeploy.bash",
				"completions/_autodeploy", "completions/autodeploy.fish", "man/man1/autodeploy.1", "man/man1/autodeploy-run.1"} {
				if !slices.Contains(names, base+"/"+want) {
					t.Errorf("no %s in %v", want, names)
				}
			}
			for _, h := range hs {
				if h.Name == base+"/kubectl-autodeploy" && (h.Typeflag != tar.TypeSymlink || h.Linkname != "autodeploy") {
					t.Errorf("kubectl-autodeploy is not a symlink to autodeploy: %+v", h)
				}
			}
			bin := bodies[base+"/autodeploy"]
			f, err := elf.NewFile(bytes.NewReader(bin))
			if err != nil {
				t.Fatal(err)
			}
			if f.Machine != machines[tg.Name()] {
				t.Errorf("binary for %s, want %s", f.Machine, machines[tg.Name()])
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Error("binary is dynamically linked (has an interpreter)")
				}
			}
			if tg == builds.host {
				p := filepath.Join(t.TempDir(), "autodeploy")
				if err := os.WriteFile(p, bin, 0o755); err != nil {
					t.Fatal(err)
				}
				wantVersion := "autodeploy v0.9.0 (commit " + a.Commit + ", built " + a.Date.Format(time.RFC3339) + ")\n"
				if out := run(t, p, "version"); out != wantVersion {
					t.Errorf("version: %q, want %q", out, wantVersion)
				}
			}
		})
	}
}

// run runs a command and returns its stdout, failing the test on an error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = nil
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}
