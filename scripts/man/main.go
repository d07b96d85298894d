// Command man writes autodeploy's man pages (one per command, from the
// cobra tree) into a directory: go run ./scripts/man DIR. The date is
// SOURCE_DATE_EPOCH's when set (reproducible builds), else today.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./scripts/man DIR")
		os.Exit(2)
	}
	date := time.Now().UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "SOURCE_DATE_EPOCH %q: %v\n", s, err)
			os.Exit(2)
		}
		date = time.Unix(sec, 0).UTC()
	}
	if err := os.MkdirAll(os.Args[1], 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := cli.GenMan(os.Args[1], date); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
