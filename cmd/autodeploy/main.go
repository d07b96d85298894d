// Command autodeploy keeps the Deployments of a small cluster on the newest
// image that Flux's image automation has detected.
package main

import (
	"os"
	// The IANA time zone database, used only when the host has none (a
	// minimal container image): deployWindows' timeZone must load
	// wherever the config is read (about 450 KB).
	_ "time/tzdata"

	"github.com/autodeploy-dev/autodeploy/internal/cli"
)

func main() {
	os.Exit(int(cli.Main()))
}
