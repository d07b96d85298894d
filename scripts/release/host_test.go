package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/robfig/cron/v3"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

func readExample(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "config", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The packaged config is valid, does nothing (no service, notification or
// metrics), and is the example line for line: each line as it is or
// commented out with "# ", so uncommenting gives the documented example.
func TestPackagedConfig(t *testing.T) {
	example := readExample(t)
	packaged, err := packagedConfig(example)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(packaged, configPath)
	if err != nil {
		t.Fatalf("the packaged config is invalid: %v\n%s", err, packaged)
	}
	if len(cfg.Services) != 0 || len(cfg.Notify) != 0 || cfg.Metrics.TextfileDir != "" || cfg.Metrics.Pushgateway != "" {
		t.Errorf("the packaged config acts: services %v, notify %v, metrics %+v", cfg.Services, cfg.Notify, cfg.Metrics)
	}
	body, ok := strings.CutPrefix(string(packaged), packagedHeader)
	if !ok {
		t.Fatalf("no header:\n%s", packaged)
	}
	body = strings.Replace(body, "services: []\n", "", 1)
	got, want := strings.Split(body, "\n"), strings.Split(string(example), "\n")
	if len(got) != len(want) {
		t.Fatalf("%d lines, the example has %d", len(got), len(want))
	}
	commented := 0
	for i := range want {
		switch got[i] {
		case want[i]:
		case "# " + want[i]:
			commented++
		default:
			t.Errorf("line %d: %q, want %q or its comment", i+1, got[i], want[i])
		}
	}
	if commented == 0 {
		t.Error("nothing commented out")
	}
}

// The cron.d line: cron's schedule syntax (robfig's standard parser, the
// five fields of cron(8)), the user field of /etc/cron.d, and the packaged
// paths, guarded for a removed package.
func TestPackagedCronLine(t *testing.T) {
	checkCronD(t, packagedCronFile(t))
}

// packagedCronFile is the /etc/cron.d/autodeploy the .deb installs.
func packagedCronFile(t *testing.T) string {
	t.Helper()
	_, hf := packagedFiles(t)
	return hf.Cron
}

// packagedFiles are the config, cron line and watch's unit the .deb
// installs.
func packagedFiles(t *testing.T) ([]byte, packagedHost) {
	t.Helper()
	packaged, err := packagedConfig(readExample(t))
	if err != nil {
		t.Fatal(err)
	}
	hf, err := hostFiles(packaged)
	if err != nil {
		t.Fatal(err)
	}
	return packaged, hf
}

// checkCronD checks an /etc/cron.d file: variables, comments, and job lines
// of a schedule cron accepts, a user and the guarded command.
func checkCronD(t *testing.T, tab string) {
	t.Helper()
	jobs := 0
	for _, line := range strings.Split(strings.TrimSpace(tab), "\n") {
		if strings.HasPrefix(line, "#") || strings.Contains(strings.Fields(line)[0], "=") {
			continue
		}
		jobs++
		f := strings.Fields(line)
		if len(f) < 7 {
			t.Fatalf("job line %q: want 5 schedule fields, a user and a command", line)
		}
		if _, err := cron.ParseStandard(strings.Join(f[:5], " ")); err != nil {
			t.Errorf("schedule of %q: %v", line, err)
		}
		if f[5] != "root" {
			t.Errorf("user field %q, want root", f[5])
		}
		if cmd, want := strings.Join(f[6:], " "), "[ -x /usr/bin/autodeploy ] && /usr/bin/autodeploy run --config /etc/autodeploy/config.yaml"; cmd != want {
			t.Errorf("command %q, want %q", cmd, want)
		}
	}
	if jobs != 1 {
		t.Errorf("%d job lines, want 1:\n%s", jobs, tab)
	}
}
