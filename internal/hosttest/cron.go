// Package hosttest runs the generated host manifests through their real
// consumers: Debian's cron daemon, and the table of schedules the cron
// tests share. It is for tests only.
package hosttest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CronSchedule is a line of testdata/cron/schedules.txt.
type CronSchedule struct {
	Spec    string
	Refused string // "" when the line is written, else part of the reason
	// Invalid: `config validate` refuses it, Refused is part of its reason.
	Invalid bool
}

// CronSchedules reads the table at path.
func CronSchedules(t testing.TB, path string) []CronSchedule {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []CronSchedule
	for _, l := range strings.Split(string(b), "\n") {
		spec, why, ok := strings.Cut(l, "|")
		if strings.HasPrefix(l, "#") || !ok {
			continue
		}
		tc := CronSchedule{Spec: strings.TrimSpace(spec), Refused: strings.TrimSpace(why)}
		if tc.Refused == "ok" {
			tc.Refused = ""
		}
		if why, ok := strings.CutPrefix(tc.Refused, "invalid:"); ok {
			tc.Refused, tc.Invalid = strings.TrimSpace(why), true
		}
		out = append(out, tc)
	}
	return out
}

// DebianCron fetches Debian's cron package with apt (a registry CI
// reaches) and returns its daemon, unpacked, not installed.
func DebianCron(t testing.TB) string {
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

// CronErrors runs the cron daemon over a cron.d holding tab as
// "autodeploy" and returns the errors it logs while reading it.
func CronErrors(t testing.TB, cronBin, tab string) []string {
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
