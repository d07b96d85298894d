//go:build release

package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Debian's own cron (the package the .deb recommends) reads the packaged
// /etc/cron.d/autodeploy and accepts it: a line cron rejects is logged as
// "Error: bad minute; while reading /etc/cron.d/autodeploy" and the whole
// file is ignored, silently for the operator. The daemon runs in a private
// mount namespace where /etc/cron.d, /etc/crontab, /var/spool, /run and
// /dev are the test's own, with its syslog socket at /dev/log; it is
// stopped as soon as it reports that it has read its crontabs. A broken
// copy of the line proves the check can fail.
func TestDebianCronAcceptsTheLine(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the cron daemon runs in a mount namespace of its own")
	}
	cronBin := debianCron(t)
	tab := packagedCronFile(t)
	if errs := cronErrors(t, cronBin, tab); len(errs) > 0 {
		t.Fatalf("cron rejects the packaged file:\n%s\n%s", strings.Join(errs, "\n"), tab)
	}
	broken := strings.Replace(tab, "*/2 * * * *", "*/2 * * *", 1)
	if errs := cronErrors(t, cronBin, broken); len(errs) == 0 || !strings.Contains(strings.Join(errs, "\n"), "while reading /etc/cron.d/autodeploy") {
		t.Fatalf("cron accepted a line with four schedule fields (the check cannot fail): %q", errs)
	}
}

// debianCron fetches Debian's cron package with apt (a registry CI
// reaches) and returns its daemon, unpacked, not installed.
func debianCron(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	download := func() ([]byte, error) {
		get := exec.Command("apt-get", "download", "cron")
		get.Dir = dir
		return get.CombinedOutput()
	}
	if _, err := download(); err != nil {
		// A fresh machine may have no package lists yet.
		if out, err := exec.Command("apt-get", "update").CombinedOutput(); err != nil {
			t.Fatalf("apt-get update: %v\n%s", err, out)
		}
		if out, err := download(); err != nil {
			t.Fatalf("apt-get download cron: %v\n%s", err, out)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "cron_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download cron left %v", debs)
	}
	x := filepath.Join(dir, "x")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	return filepath.Join(x, "usr", "sbin", "cron")
}

// cronErrors runs the cron daemon over a cron.d holding tab as
// "autodeploy" and returns the errors it logs while reading it.
func cronErrors(t *testing.T, cronBin, tab string) []string {
	t.Helper()
	d := t.TempDir()
	for _, sub := range []string{"crond", "olddev", "spool", "run", "dev"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// cron refuses cron.d files writable by others than root.
	if err := os.WriteFile(filepath.Join(d, "crond", "autodeploy"), []byte(tab), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "crontab"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(d, "log.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	script := `set -e
d=` + d + `
mount --make-rprivate /
mount --bind "$d/crond" /etc/cron.d
[ -e /etc/crontab ] && mount --bind "$d/crontab" /etc/crontab
mount --bind "$d/spool" /var/spool
mkdir -p /var/spool/cron/crontabs
mount --bind "$d/run" /run
mount --rbind /dev "$d/olddev"
mount -t tmpfs tmpfs /dev
touch /dev/null /dev/log
mount --bind "$d/olddev/null" /dev/null
mount --bind "$d/log.sock" /dev/log
exec "$0" -f -L 15`
	cmd := exec.Command("unshare", "--mount", "sh", "-c", script, cronBin)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	// Until cron says it has read its crontabs (its next step runs the
	// @reboot jobs), or exits, or a generous bound passes.
	var errs []string
	buf := make([]byte, 4096)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_ = conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		if err != nil {
			select {
			case werr := <-exited:
				exited <- werr
				t.Fatalf("cron exited before reading its crontabs: %v\n%s", werr, stderr.String())
			default:
			}
			t.Fatalf("cron said nothing within 30s: %v\n%s", err, stderr.String())
		}
		msg := string(buf[:n])
		if strings.Contains(msg, "Error") || strings.Contains(msg, "ERROR") {
			errs = append(errs, msg)
		}
		if strings.Contains(msg, "Running @reboot jobs") {
			return errs
		}
	}
}
