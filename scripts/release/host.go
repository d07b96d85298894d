package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/manifests"
)

// Where the .deb puts things: the binary where the cron line finds it, the
// config where every command looks without --config.
const (
	binaryPath = "/usr/bin/autodeploy"
	configPath = "/etc/autodeploy/config.yaml"
)

// packagedHeader opens the installed config: what a fresh install does
// (nothing) and how to change that.
const packagedHeader = `# Installed by the autodeploy package. Services, notifications and metrics
# are commented out: the cron job (/etc/cron.d/autodeploy) does nothing until
# services are listed below. Remove "services: []", uncomment the list, edit
# it, then check with: autodeploy config validate
#
`

// acting are the example's top-level blocks that make a fresh install do
// something: deploy, notify, push metrics.
var acting = map[string]bool{"services": true, "notify": true, "metrics": true}

var topLevelKey = regexp.MustCompile(`^([A-Za-z]+):`)

// packagedConfig is the example config (testdata/config/example.yaml, whose
// every key the config tests keep documented) with its acting blocks
// commented out line by line and an explicit "services: []", the valid
// config of a host not configured yet. Generated, so that it never drifts
// from the example.
func packagedConfig(example []byte) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(packagedHeader)
	in, seen := false, map[string]bool{}
	for _, line := range strings.SplitAfter(string(example), "\n") {
		if m := topLevelKey.FindStringSubmatch(line); m != nil {
			in = acting[m[1]]
			seen[m[1]] = true
			if m[1] == "services" {
				b.WriteString("services: []\n")
			}
		}
		// Comments at the left margin introduce the next key; blank lines
		// stay blank.
		if in && strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "#") {
			line = "# " + line
		}
		b.WriteString(line)
	}
	for k := range acting {
		if !seen[k] {
			return nil, fmt.Errorf("the example config has no top-level %s: to comment out; update packagedConfig", k)
		}
	}
	return b.Bytes(), nil
}

// packagedHost is what the .deb installs beside the config, made by the
// functions that print them for a host: /etc/cron.d/autodeploy (`autodeploy
// manifests cron --binary /usr/bin/autodeploy --if-installed`) and the
// watch's unit (`autodeploy manifests systemd --watch --binary
// /usr/bin/autodeploy`), both for the packaged config.
type packagedHost struct {
	Cron      string
	WatchUnit string
}

// hostFiles writes packagedHost for the packaged config.
func hostFiles(packaged []byte) (packagedHost, error) {
	cfg, err := config.Parse(packaged, configPath)
	if err != nil {
		return packagedHost{}, fmt.Errorf("the packaged config is invalid: %w", err)
	}
	o := manifests.HostOptions{Binary: binaryPath, User: "root"}
	var cron, unit strings.Builder
	// The cron line is a conffile, left behind by a removal; the unit goes
	// with the package and needs no guard.
	cronO := o
	cronO.IfInstalled = true
	if err := manifests.Cron(&cron, cfg, cronO); err != nil {
		return packagedHost{}, err
	}
	if err := manifests.SystemdWatch(&unit, cfg, o); err != nil {
		return packagedHost{}, err
	}
	return packagedHost{Cron: cron.String(), WatchUnit: unit.String()}, nil
}
