// Package version holds the build's version, set with -ldflags -X.
package version

import "fmt"

// Set by the Makefile through -ldflags "-X .../internal/version.Version=...".
var (
	Version = "dev"
	Commit  = "unknown"
	Date    = "unknown"
)

// String is the one-line form printed by `autodeploy version`.
func String() string {
	return fmt.Sprintf("autodeploy %s (commit %s, built %s)", Version, Commit, Date)
}

// UserAgent identifies autodeploy in API server audit logs and metrics.
func UserAgent() string { return "autodeploy/" + Version }
