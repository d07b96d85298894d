//go:build release

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/hosttest"
	"github.com/autodeploy-dev/autodeploy/internal/manifests"
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
	cronBin := hosttest.DebianCron(t)
	tab := packagedCronFile(t)
	if errs := hosttest.CronErrors(t, cronBin, tab); len(errs) > 0 {
		t.Fatalf("cron rejects the packaged file:\n%s\n%s", strings.Join(errs, "\n"), tab)
	}
	broken := strings.Replace(tab, "*/2 * * * *", "*/2 * * *", 1)
	if errs := hosttest.CronErrors(t, cronBin, broken); len(errs) == 0 || !strings.Contains(strings.Join(errs, "\n"), "while reading /etc/cron.d/autodeploy") {
		t.Fatalf("cron accepted a line with four schedule fields (the check cannot fail): %q", errs)
	}
}

// Debian's cron runs every line `manifests cron` writes and would not run
// any it refuses (testdata/cron/schedules.txt, whose refusals
// internal/manifests checks): each written file is read without an error;
// each refused schedule, written raw into a line, makes cron ignore the
// whole file or, for a TZ= prefix, parses as the variable it is to cron
// (no error, and no job: the line never runs). A line without the user
// field of /etc/cron.d, which `doctor` fails, makes cron ignore the file.
func TestDebianCronRunsWhatCronWrites(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the cron daemon runs in a mount namespace of its own")
	}
	cronBin := hosttest.DebianCron(t)
	for _, tc := range hosttest.CronSchedules(t, filepath.Join("..", "..", "testdata", "cron", "schedules.txt")) {
		t.Run(tc.Spec, func(t *testing.T) {
			cfg, err := config.Parse([]byte("schedule: '"+tc.Spec+"'\nservices: [{name: x}]\n"), configPath)
			var b strings.Builder
			switch {
			case tc.Invalid && err == nil:
				t.Fatalf("config validate accepts %q, want it refused (%s)", tc.Spec, tc.Refused)
			case !tc.Invalid && err != nil:
				t.Fatal(err)
			case !tc.Invalid:
				err = manifests.Cron(&b, cfg, manifests.HostOptions{Binary: binaryPath, User: "root", IfInstalled: true})
			}
			if tc.Refused == "" {
				if err != nil {
					t.Fatal(err)
				}
				if errs := hosttest.CronErrors(t, cronBin, b.String()); len(errs) > 0 {
					t.Fatalf("cron rejects what manifests cron wrote:\n%s\n%s", strings.Join(errs, "\n"), b.String())
				}
				return
			}
			if err == nil {
				t.Fatalf("written, want it refused:\n%s", b.String())
			}
			raw := "SHELL=/bin/sh\n" + tc.Spec + " root /bin/true\n"
			errs := hosttest.CronErrors(t, cronBin, raw)
			ignored := strings.Contains(strings.Join(errs, "\n"), "this crontab file will be ignored")
			if strings.HasPrefix(tc.Spec, "TZ=") || strings.HasPrefix(tc.Spec, "CRON_TZ=") {
				if len(errs) > 0 {
					t.Fatalf("cron rejects %q, want it read as a variable: %q", tc.Spec, errs)
				}
			} else if !ignored {
				t.Fatalf("cron accepts %q, which manifests cron refuses (%v): %q", tc.Spec, err, errs)
			}
		})
	}
	noUser := "*/2 * * * * /usr/bin/autodeploy run --config /etc/autodeploy/config.yaml\n"
	if errs := hosttest.CronErrors(t, cronBin, noUser); !strings.Contains(strings.Join(errs, "\n"), "this crontab file will be ignored") {
		t.Fatalf("cron accepts a cron.d line without its user field: %q", errs)
	}
}
