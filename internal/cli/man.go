package cli

import (
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra/doc"

	"github.com/autodeploy-dev/autodeploy/internal/version"
)

// GenMan writes a man page per command (autodeploy.1, autodeploy-run.1,
// ...) into dir, from the same command tree as --help: the pages cannot
// drift from the help texts. date is the pages' date (a release's, for
// reproducible packages).
func GenMan(dir string, date time.Time) error {
	root := NewRootCmd(NewFactory(IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard}, func(string) string { return "" }))
	// cobra's own completion and help commands are not autodeploy's to
	// document; completion has its own page in every shell.
	for _, c := range root.Commands() {
		if c.Name() == "help" {
			c.Hidden = true
		}
	}
	root.DisableAutoGenTag = true
	return doc.GenManTree(root, &doc.GenManHeader{
		Title:   "AUTODEPLOY",
		Section: "1",
		Source:  "autodeploy " + version.Version,
		Manual:  "autodeploy manual",
		Date:    &date,
	}, dir)
}
