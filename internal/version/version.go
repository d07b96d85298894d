// Package version holds the build's version, set with -ldflags -X.
package version

import (
	"fmt"
	"regexp"
	"runtime/debug"
	"strings"
)

// Set by the Makefile and scripts/release through -ldflags "-X
// .../internal/version.Version=...".
var (
	Version = "dev"
	Commit  = "unknown"
	Date    = "unknown"
)

// ImageRepository is where a release publishes autodeploy's image (make
// release builds it, tagged with the version).
const ImageRepository = "ghcr.io/autodeploy-dev/autodeploy"

// release is a release tag: vMAJOR.MINOR.PATCH with an optional
// pre-release without '-', which leaves out what git describe adds after a
// tag (-4-g95a2a9f) and Go's pseudo-versions (v0.0.0-2026...-95a2a9f1b2c3):
// builds no release published. -dirty is a tag with local changes.
var release = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$`)

// IsRelease reports whether v is the version of a release, the only
// versions with a published image.
func IsRelease(v string) bool {
	return release.MatchString(v) && !strings.HasSuffix(v, "-dirty")
}

// current is Version, or, in a binary built without the Makefile's flags,
// the module version `go install ...@v1.2.3` records.
func current() string {
	if Version != "dev" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && IsRelease(bi.Main.Version) {
		return bi.Main.Version
	}
	return Version
}

// Image is the container image of this version, or "" for a development
// build, of which no image is published.
func Image() string {
	if v := current(); IsRelease(v) {
		return ImageRepository + ":" + v
	}
	return ""
}

// String is the one-line form printed by `autodeploy version`.
func String() string {
	return fmt.Sprintf("autodeploy %s (commit %s, built %s)", current(), Commit, Date)
}

// UserAgent identifies autodeploy in API server audit logs and metrics.
func UserAgent() string { return "autodeploy/" + current() }
