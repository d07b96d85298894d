// Command autodeploy keeps the Deployments of a small cluster on the newest
// image that Flux's image automation has detected.
package main

import (
	"os"

	"github.com/autodeploy-dev/autodeploy/internal/cli"
)

func main() {
	os.Exit(int(cli.Main()))
}
