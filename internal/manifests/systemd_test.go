package manifests

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// systemd splits ExecStart at spaces and resolves % specifiers and $
// variables in it (systemd.service(5), "Command lines"): a binary or
// config path with a space, %, $, a quote or a backslash is quoted and
// escaped, so that the run (and the watch) gets the paths it was given.
func TestSystemdExecStart(t *testing.T) {
	for _, tc := range []struct{ binary, config, want string }{
		{"/usr/bin/autodeploy", "/etc/autodeploy/config.yaml", `ExecStart=/usr/bin/autodeploy run --config /etc/autodeploy/config.yaml`},
		{"/opt/my tools/autodeploy", "/etc/auto deploy/c.yaml", `ExecStart="/opt/my tools/autodeploy" run --config "/etc/auto deploy/c.yaml"`},
		{"/opt/100%/autodeploy", "/etc/$HOME/it's \"x\"\\.yaml", `ExecStart=/opt/100%%/autodeploy run --config "/etc/$$HOME/it's \"x\"\\.yaml"`},
	} {
		cfg := &config.Config{Schedule: "*/2 * * * *", Path: tc.config, RunTimeout: config.DefaultRunTimeout}
		for cmd, write := range systemdUnits {
			var b bytes.Buffer
			if err := write(&b, cfg, HostOptions{Binary: tc.binary, User: "deploy"}); err != nil {
				t.Fatal(err)
			}
			if want := strings.Replace(tc.want, " run ", " "+cmd+" ", 1); !strings.Contains(b.String(), "\n"+want+"\n") {
				t.Errorf("want %s in\n%s", want, b.String())
			}
		}
	}
	// systemd takes the executable's name literally after unquoting: $$
	// stays $$ ("Command /opt/a$$b/autodeploy is not executable"), and a
	// quote, backslash or control character is "Executable name contains
	// special characters" (systemd-analyze verify, 257): refused, in one
	// line naming the path.
	for _, bin := range []string{"/opt/my dir/a%b$c/autodeploy", "/opt/it's/autodeploy", `/opt/a"b/autodeploy`, `/opt/a\b/autodeploy`, "/opt/a\tb/autodeploy", "/opt/a\x1bb/autodeploy", "/opt/a\x7fb/autodeploy"} {
		err := Systemd(&bytes.Buffer{}, &config.Config{Schedule: "@hourly", Path: "/etc/c.yaml"}, HostOptions{Binary: bin, User: "root"})
		if err == nil {
			t.Errorf("--binary %q: accepted, want a one-line refusal naming systemd", bin)
			continue
		}
		// A control character is refused for every target, cron lines too
		// (oneLine): that refusal need not name systemd.
		named := strings.Contains(err.Error(), "systemd") || strings.ContainsFunc(bin, unicode.IsControl)
		if strings.Contains(err.Error(), "\n") || !named || !strings.Contains(err.Error(), "--binary") {
			t.Errorf("--binary %q: %v, want a one-line refusal naming systemd", bin, err)
		}
	}
	// The watch's unit refuses what the timer's service refuses.
	for cmd, write := range systemdUnits {
		for _, o := range []HostOptions{{Binary: "/opt/a\nb", User: "root"}, {Binary: "/usr/bin/autodeploy", User: "a%b"}, {Binary: "/opt/it's/autodeploy", User: "root"}, {Binary: "autodeploy", User: "root"}} {
			if err := write(&bytes.Buffer{}, &config.Config{Schedule: "@hourly", Path: "/etc/c.yaml"}, o); err == nil {
				t.Errorf("%s: %+v accepted", cmd, o)
			}
		}
		if err := write(&bytes.Buffer{}, &config.Config{Schedule: "@hourly", Path: "/etc/a\nb.yaml"}, HostOptions{Binary: "/usr/bin/autodeploy", User: "root"}); err == nil {
			t.Errorf("%s: a config path with a newline accepted", cmd)
		}
	}
}

// systemdUnits write the units, by the command they run.
var systemdUnits = map[string]func(io.Writer, *config.Config, HostOptions) error{"run": Systemd, "watch": SystemdWatch}

// The watch's unit runs `watch` with the paths quoted as the timer's
// service quotes them, restarts it when it fails, and stops it with
// SIGTERM quickly (the watch stops within a second); its exit 130 on that
// SIGTERM is a clean stop, not a failure.
func TestSystemdWatch(t *testing.T) {
	cfg := &config.Config{Schedule: "*/2 * * * *", Path: "/etc/autodeploy/config.yaml", RunTimeout: config.DefaultRunTimeout}
	var b bytes.Buffer
	if err := SystemdWatch(&b, cfg, HostOptions{Binary: "/usr/bin/autodeploy", User: "deploy"}); err != nil {
		t.Fatal(err)
	}
	unit := b.String()
	for _, want := range []string{"ExecStart=/usr/bin/autodeploy watch --config /etc/autodeploy/config.yaml", "Type=simple", "User=deploy", "Restart=on-failure", "KillSignal=SIGTERM", "SuccessExitStatus=130", "WantedBy=multi-user.target"} {
		if !strings.Contains(unit, "\n"+want+"\n") {
			t.Errorf("want %s in\n%s", want, unit)
		}
	}
	for _, not := range []string{"[Timer]", "Type=oneshot", "TimeoutStartSec"} {
		if strings.Contains(unit, not) {
			t.Errorf("%s in the watch's unit:\n%s", not, unit)
		}
	}
	if stop := directive(unit, "TimeoutStopSec"); stop == "" || len(stop) > 2 {
		t.Errorf("TimeoutStopSec=%q, want a few seconds (the watch stops within one)", stop)
	}
	if sec := directive(unit, "RestartSec"); sec == "" {
		t.Errorf("no RestartSec in\n%s", unit)
	}
	// A config or flag error (exit 2, ExitUsage) is not restarted: it was,
	// every 10 s for ever, the same error each time (issue 18, sixth pass).
	// What else the watch exits with (a lock lost) is.
	if prevent := directive(unit, "RestartPreventExitStatus"); prevent != "2" {
		t.Errorf("RestartPreventExitStatus=%q, want 2 (a config error) in\n%s", prevent, unit)
	}
}

// The watch's service has every directive of the timer's service but
// those that make the difference (what it runs, how it is started and
// stopped): hardening or an ordering added to one is added to both.
func TestSystemdWatchSharesTheTimersService(t *testing.T) {
	cfg := &config.Config{Schedule: "*/2 * * * *", Path: "/etc/autodeploy/config.yaml", RunTimeout: config.DefaultRunTimeout}
	var timer, watch bytes.Buffer
	o := HostOptions{Binary: "/usr/bin/autodeploy", User: "deploy"}
	if err := Systemd(&timer, cfg, o); err != nil {
		t.Fatal(err)
	}
	if err := SystemdWatch(&watch, cfg, o); err != nil {
		t.Fatal(err)
	}
	service, _, _ := strings.Cut(timer.String(), "# /etc/systemd/system/autodeploy.timer\n")
	own := map[string]bool{"Description": true, "Type": true, "ExecStart": true, "TimeoutStartSec": true}
	n := 0
	for _, l := range strings.Split(service, "\n") {
		key, _, ok := strings.Cut(l, "=")
		if !ok || strings.HasPrefix(l, "#") || own[key] {
			continue
		}
		n++
		if !strings.Contains(watch.String(), "\n"+l+"\n") {
			t.Errorf("the timer's service has %q, the watch's does not:\n%s", l, watch.String())
		}
	}
	if n < 3 {
		t.Fatalf("only %d shared directives found in the timer's service:\n%s", n, service)
	}
}

// directive is the value of key= in a unit, or "".
func directive(unit, key string) string {
	for _, l := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v
		}
	}
	return ""
}

// systemd itself accepts the unit and the timer, binary and config at
// paths with a space and a %: systemd-analyze verify, which fails on an
// executable it cannot find or a specifier it cannot resolve.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd): the units are not checked by systemd")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "my 100% tools", "autodeploy")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{"*/2 * * * *", "30 3 * * *", "TZ=Europe/Berlin */2 * * * *", "@hourly", "*/60 * * * *", "*/90 * * * *", "*/7 * * * *"} {
		cfg := &config.Config{Schedule: spec, Path: filepath.Join(dir, `my $conf %z it's "q" \.yaml`), RunTimeout: config.DefaultRunTimeout}
		var b bytes.Buffer
		if err := Systemd(&b, cfg, HostOptions{Binary: bin, User: "root"}); err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
		service, timer, ok := strings.Cut(b.String(), "# /etc/systemd/system/autodeploy.timer\n")
		if !ok {
			t.Fatalf("no timer in\n%s", b.String())
		}
		for name, body := range map[string]string{"autodeploy.service": service, "autodeploy.timer": timer} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		verify(t, analyze, spec, b.String(), filepath.Join(dir, "autodeploy.service"), filepath.Join(dir, "autodeploy.timer"))
	}
	cfg := &config.Config{Schedule: "*/2 * * * *", Path: filepath.Join(dir, `my $conf %z it's "q" \.yaml`), RunTimeout: config.DefaultRunTimeout}
	var b bytes.Buffer
	if err := SystemdWatch(&b, cfg, HostOptions{Binary: bin, User: "root"}); err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(dir, "autodeploy-watch.service")
	if err := os.WriteFile(unit, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	verify(t, analyze, "watch", b.String(), unit)
}

// verify runs systemd-analyze verify on units, written from out; it skips
// where systemd cannot run its checks (no systemd as PID 1 in some
// containers), and fails on any complaint about the units.
func verify(t *testing.T, analyze, what, out string, units ...string) {
	t.Helper()
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, units...)...)
	got, err := cmd.CombinedOutput()
	dir := filepath.Dir(units[0])
	if err != nil && strings.Contains(string(got), "Failed to ") && !strings.Contains(string(got), dir) {
		t.Skipf("systemd-analyze verify cannot run here: %v\n%s", err, got)
	}
	if err != nil || len(got) > 0 {
		t.Errorf("%s: systemd-analyze verify: %v\n%s\n%s", what, err, got, out)
	}
}

// --user is a user name, POSIX's portable set ([a-z_][a-z0-9_-]*, an
// optional trailing $ for Samba machine accounts): cron reads the field up
// to a space and systemd resolves User= itself, so "root;id", "a:b", "a/b",
// "#1" or "-r" would name no user or another one (issue 18).
func TestUserName(t *testing.T) {
	cfg := &config.Config{Schedule: "@hourly", Path: "/etc/c.yaml", RunTimeout: config.DefaultRunTimeout}
	for _, u := range []string{"root", "deploy", "_svc", "a-b_c1", "host$"} {
		for name, write := range map[string]func(*bytes.Buffer, *config.Config, HostOptions) error{"cron": func(b *bytes.Buffer, c *config.Config, o HostOptions) error { return Cron(b, c, o) }, "systemd": func(b *bytes.Buffer, c *config.Config, o HostOptions) error { return Systemd(b, c, o) }} {
			if err := write(&bytes.Buffer{}, cfg, HostOptions{Binary: "/usr/bin/autodeploy", User: u}); err != nil {
				t.Errorf("%s --user %q: %v", name, u, err)
			}
		}
	}
	for _, u := range []string{"root;id", "a:b", "a/b", "#1", "-r", "Root", "1abc", "a$b", "a b", "", "a%b", "é", "$"} {
		for name, write := range map[string]func(*bytes.Buffer, *config.Config, HostOptions) error{"cron": func(b *bytes.Buffer, c *config.Config, o HostOptions) error { return Cron(b, c, o) }, "systemd": func(b *bytes.Buffer, c *config.Config, o HostOptions) error { return Systemd(b, c, o) }} {
			err := write(&bytes.Buffer{}, cfg, HostOptions{Binary: "/usr/bin/autodeploy", User: u})
			if err == nil || !strings.Contains(err.Error(), "--user") || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s --user %q: %v, want it refused in one line", name, u, err)
			}
		}
	}
}
