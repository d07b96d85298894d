//go:build release

package main

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// dpkgRoot is a throwaway dpkg root: a status database and nothing else.
// Maintainer scripts run without a chroot (--force-script-chrootless: the
// root has no /bin/sh to chroot into), with DPKG_ROOT pointing at it, which
// packaging/deb's scripts honour; dpkg logs inside the root, not to the
// host's /var/log/dpkg.log.
type dpkgRoot struct {
	t    *testing.T
	root string
}

func newDpkgRoot(t *testing.T) *dpkgRoot {
	t.Helper()
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("no dpkg on this machine")
	}
	if os.Geteuid() != 0 {
		t.Skip("dpkg --root installs files owned by root: run as root (CI does)")
	}
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/log"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return &dpkgRoot{t: t, root: root}
}

// dpkg runs dpkg on the root with no terminal: a question (a conffile
// prompt) fails the test instead of waiting.
func (r *dpkgRoot) dpkg(args ...string) string {
	r.t.Helper()
	args = append([]string{"--root=" + r.root, "--force-script-chrootless", "--log=" + r.path("var/log/dpkg.log")}, args...)
	cmd := exec.Command("dpkg", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (r *dpkgRoot) path(p string) string { return filepath.Join(r.root, p) }

func (r *dpkgRoot) status() string {
	r.t.Helper()
	out, _ := exec.Command("dpkg-query", "--admindir="+r.path("var/lib/dpkg"), "-W", "-f=${Status} ${Version}", "autodeploy").Output()
	return string(out)
}

func (r *dpkgRoot) read(p string) string {
	r.t.Helper()
	b, err := os.ReadFile(r.path(p))
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

func (r *dpkgRoot) exists(p string) bool {
	_, err := os.Lstat(r.path(p))
	return err == nil
}

// The .deb's life on a host: install sets the host up (binary, plugin,
// config and cron line as conffiles, completions, man pages, log
// directory) and the installed binary accepts the installed config; an
// upgrade keeps an edited config; remove keeps config and logs; purge
// removes them and leaves what an admin added.
func TestDebLifecycle(t *testing.T) {
	a, _, next := releases(t)
	deb := filepath.Join(a.Out, "autodeploy_0.9.0_"+builds.host.Deb+".deb")
	nextDeb := filepath.Join(next.Out, "autodeploy_0.9.1_"+builds.host.Deb+".deb")
	r := newDpkgRoot(t)

	r.dpkg("--install", deb)
	if got := r.status(); got != "install ok installed 0.9.0" {
		t.Fatalf("status after install: %q", got)
	}
	for _, p := range []string{
		"usr/bin/autodeploy", "etc/autodeploy/config.yaml", "etc/cron.d/autodeploy",
		"usr/share/bash-completion/completions/autodeploy", "usr/share/zsh/vendor-completions/_autodeploy",
		"usr/share/fish/vendor_completions.d/autodeploy.fish", "usr/share/man/man1/autodeploy-run.1.gz",
		"usr/share/doc/autodeploy/copyright", "lib/systemd/system/autodeploy-watch.service",
	} {
		if !r.exists(p) {
			t.Errorf("/%s not installed", p)
		}
	}
	conffiles := r.read("var/lib/dpkg/info/autodeploy.conffiles")
	if conffiles != "/etc/autodeploy/config.yaml\n/etc/cron.d/autodeploy\n" {
		t.Errorf("conffiles:\n%s", conffiles)
	}
	if link, err := os.Readlink(r.path("usr/bin/kubectl-autodeploy")); err != nil || link != "autodeploy" {
		t.Errorf("kubectl-autodeploy -> %q (%v), want autodeploy", link, err)
	}
	// The watch's unit is shipped disabled: nothing links it into a target.
	if r.exists("etc/systemd") {
		t.Error("the install enabled the watch (/etc/systemd exists)")
	}
	checkLogDir(t, r.path("var/log/autodeploy"))
	checkCronD(t, r.read("etc/cron.d/autodeploy"))

	bin := r.path("usr/bin/autodeploy")
	if out := run(t, bin, "version"); !strings.HasPrefix(out, "autodeploy v0.9.0 ") {
		t.Errorf("installed version: %q", out)
	}
	cfg := r.path("etc/autodeploy/config.yaml")
	if out := run(t, bin, "config", "validate", "--config", cfg); out != cfg+": ok (0 services: runs do nothing until services are configured)\n" {
		t.Errorf("config validate: %q", out)
	}
	// What the cron line runs, on a host not configured yet: nothing,
	// silently, without a cluster (there is none here).
	if out := run(t, bin, "run", "--config", cfg, "--kubeconfig", "/nonexistent"); out != "" {
		t.Errorf("run on the packaged config printed %q", out)
	}
	if out := run(t, r.path("usr/bin/kubectl-autodeploy"), "--help"); !strings.Contains(out, "kubectl autodeploy [command]") {
		t.Errorf("kubectl-autodeploy --help does not say 'kubectl autodeploy':\n%s", out)
	}

	// An admin configures the host, then upgrades.
	edited := strings.Replace(r.read("etc/autodeploy/config.yaml"), "services: []\n", "services: []  # edited by an admin\n", 1)
	if err := os.WriteFile(cfg, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	r.dpkg("--install", nextDeb)
	if got := r.status(); got != "install ok installed 0.9.1" {
		t.Fatalf("status after upgrade: %q", got)
	}
	if out := run(t, bin, "version"); !strings.HasPrefix(out, "autodeploy v0.9.1 ") {
		t.Errorf("upgraded version: %q", out)
	}
	if got := r.read("etc/autodeploy/config.yaml"); got != edited {
		t.Errorf("the upgrade replaced the edited config:\n%s", got)
	}
	if err := os.WriteFile(r.path("var/log/autodeploy/autodeploy.log"), []byte("a line\n"), 0o640); err != nil {
		t.Fatal(err)
	}

	r.dpkg("--remove", "autodeploy")
	if got := r.status(); got != "deinstall ok config-files 0.9.1" {
		t.Errorf("status after remove: %q", got)
	}
	if r.exists("usr/bin/autodeploy") || r.exists("usr/bin/kubectl-autodeploy") || r.exists("lib/systemd/system/autodeploy-watch.service") {
		t.Error("remove left the binary or the watch's unit")
	}
	if got := r.read("etc/autodeploy/config.yaml"); got != edited {
		t.Errorf("remove changed the config:\n%s", got)
	}
	for _, p := range []string{"etc/cron.d/autodeploy", "var/log/autodeploy/autodeploy.log"} {
		if !r.exists(p) {
			t.Errorf("remove deleted /%s", p)
		}
	}

	// A secret an admin put beside the config is not the package's.
	if err := os.WriteFile(r.path("etc/autodeploy/discord-url"), []byte("https://example.invalid\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.dpkg("--purge", "autodeploy")
	if got := r.status(); got != "" {
		t.Errorf("status after purge: %q", got)
	}
	for _, p := range []string{"etc/autodeploy/config.yaml", "etc/cron.d/autodeploy", "var/log/autodeploy"} {
		if r.exists(p) {
			t.Errorf("purge left /%s", p)
		}
	}
	if !r.exists("etc/autodeploy/discord-url") {
		t.Error("purge deleted a file the admin added")
	}
}

// checkLogDir: the log directory is root's, readable by adm (where the
// group exists), closed to others.
func checkLogDir(t *testing.T, dir string) {
	t.Helper()
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("no log directory: %v", err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	wantGID := uint32(0)
	if g, err := user.LookupGroup("adm"); err == nil {
		if id, err := strconv.Atoi(g.Gid); err == nil {
			wantGID = uint32(id)
		}
	}
	if !st.IsDir() || st.Mode().Perm() != 0o750 || sys.Uid != 0 || sys.Gid != wantGID {
		t.Errorf("log directory %s: mode %v uid %d gid %d, want a directory 0750 root:%d", dir, st.Mode(), sys.Uid, sys.Gid, wantGID)
	}
}
