package manifests

import (
	"bytes"
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
// escaped, so that the run gets the paths it was given.
func TestSystemdExecStart(t *testing.T) {
	for _, tc := range []struct{ binary, config, want string }{
		{"/usr/bin/autodeploy", "/etc/autodeploy/config.yaml", `ExecStart=/usr/bin/autodeploy run --config /etc/autodeploy/config.yaml`},
		{"/opt/my tools/autodeploy", "/etc/auto deploy/c.yaml", `ExecStart="/opt/my tools/autodeploy" run --config "/etc/auto deploy/c.yaml"`},
		{"/opt/100%/autodeploy", "/etc/$HOME/it's \"x\"\\.yaml", `ExecStart=/opt/100%%/autodeploy run --config "/etc/$$HOME/it's \"x\"\\.yaml"`},
	} {
		cfg := &config.Config{Schedule: "*/2 * * * *", Path: tc.config, RunTimeout: config.DefaultRunTimeout}
		var b bytes.Buffer
		if err := Systemd(&b, cfg, HostOptions{Binary: tc.binary, User: "deploy"}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), "\n"+tc.want+"\n") {
			t.Errorf("want %s in\n%s", tc.want, b.String())
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
	for _, o := range []HostOptions{{Binary: "/opt/a\nb", User: "root"}, {Binary: "/usr/bin/autodeploy", User: "a%b"}} {
		if err := Systemd(&bytes.Buffer{}, &config.Config{Schedule: "@hourly", Path: "/etc/c.yaml"}, o); err == nil {
			t.Errorf("Systemd(%+v) accepted", o)
		}
	}
	if err := Systemd(&bytes.Buffer{}, &config.Config{Schedule: "@hourly", Path: "/etc/a\nb.yaml"}, HostOptions{Binary: "/usr/bin/autodeploy", User: "root"}); err == nil {
		t.Error("a config path with a newline accepted")
	}
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
		cmd := exec.Command(analyze, "verify", "--man=no", filepath.Join(dir, "autodeploy.service"), filepath.Join(dir, "autodeploy.timer"))
		out, err := cmd.CombinedOutput()
		if err != nil && strings.Contains(string(out), "Failed to ") && !strings.Contains(string(out), dir) {
			t.Skipf("systemd-analyze verify cannot run here: %v\n%s", err, out)
		}
		if err != nil || len(out) > 0 {
			t.Errorf("%q: systemd-analyze verify: %v\n%s\n%s", spec, err, out, b.String())
		}
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
