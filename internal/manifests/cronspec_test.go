package manifests

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/hosttest"
)

// What `manifests cron` writes, Debian's cron runs; what it refuses, cron
// would ignore (with the whole file) or read as a variable and never run.
// The table is testdata/cron/schedules.txt, which the release test hands
// to Debian's cron daemon.
func TestCronRefusesWhatCronCannotRun(t *testing.T) {
	for _, tc := range hosttest.CronSchedules(t, filepath.Join("..", "..", "testdata", "cron", "schedules.txt")) {
		t.Run(tc.Spec, func(t *testing.T) {
			cfg, err := config.Parse([]byte("schedule: '"+tc.Spec+"'\nservices: [{name: x}]\n"), "/etc/autodeploy/config.yaml")
			if tc.Invalid {
				if err == nil || !strings.Contains(err.Error(), tc.Refused) {
					t.Fatalf("config validate: %v, want it refused for %s", err, tc.Refused)
				}
				// doctor judges a line in a crontab by CronSpec.
				if CronSpec(tc.Spec) == nil {
					t.Fatalf("CronSpec accepts %q, which Debian's cron ignores the whole file for", tc.Spec)
				}
				return
			}
			if err != nil {
				t.Fatalf("config validate refuses it: %v", err)
			}
			var b bytes.Buffer
			err = Cron(&b, cfg, HostOptions{Binary: "/usr/bin/autodeploy", User: "root"})
			switch {
			case tc.Refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.Refused == "" && !strings.Contains(b.String(), "\n"+tc.Spec+" root "):
				t.Fatalf("no line on %q:\n%s", tc.Spec, b.String())
			case tc.Refused != "" && err == nil:
				t.Fatalf("written, want it refused (%s):\n%s", tc.Refused, b.String())
			case tc.Refused != "" && (!strings.Contains(err.Error(), tc.Refused) || strings.Contains(err.Error(), "\n") ||
				!strings.Contains(err.Error(), "/etc/autodeploy/config.yaml") || !strings.Contains(err.Error(), "schedule")):
				t.Fatalf("error %q: want one line naming the schedule, the file and %q", err, tc.Refused)
			}
		})
	}
}
