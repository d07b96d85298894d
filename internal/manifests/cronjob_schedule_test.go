package manifests

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// CronJobSchedules are the config schedules and the CronJob's spec for
// each: the API server refuses a TZ= or CRON_TZ= prefix in spec.schedule
// ("use timeZone field instead"; spec.timeZone is served from 1.27 on)
// and Sunday as 7 (its parser is robfig's, which stops at 6). The
// integration test (cronjob_integration_test.go) creates each one.
var cronJobSchedules = []struct{ spec, schedule, timeZone string }{
	{"*/2 * * * *", "*/2 * * * *", ""},
	{"TZ=Europe/Berlin */2 * * * *", "*/2 * * * *", "Europe/Berlin"},
	{"CRON_TZ=UTC 0 12 * * 1-7", "0 12 * * 1-6,0", "UTC"},
	{"*/2 * * * 7", "*/2 * * * 0", ""},
	{"0 12 ? * *", "0 12 ? * *", ""},
	{"@hourly", "@hourly", ""},
	{"@every 5m", "@every 5m", ""},
}

// cronJobFor writes `manifests cronjob` for a config with schedule spec.
func cronJobFor(t *testing.T, spec string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	raw := "schedule: '" + spec + "'\nservices: [{name: api}]\n"
	if err := os.WriteFile(path, []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(raw), path)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := CronJob(&b, cfg, CronJobOptions{Image: "registry.local/autodeploy:v1", Namespace: "flux-system", ServiceAccount: "autodeploy"}); err != nil {
		t.Fatalf("%q: %v", spec, err)
	}
	return b.String()
}

func TestCronJobSchedule(t *testing.T) {
	for _, tc := range cronJobSchedules {
		out := cronJobFor(t, tc.spec)
		if want := "\n  schedule: \"" + tc.schedule + "\"\n"; !strings.Contains(out, want) {
			t.Errorf("%q: want %q in\n%s", tc.spec, want, out)
		}
		hasZone := strings.Contains(out, "\n  timeZone: ")
		if want := "\n  timeZone: \"" + tc.timeZone + "\"\n"; tc.timeZone != "" && !strings.Contains(out, want) || tc.timeZone == "" && hasZone {
			t.Errorf("%q: want time zone %q in\n%s", tc.spec, tc.timeZone, out)
		}
	}
}
