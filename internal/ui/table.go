// Package ui holds what the human output of every command shares: aligned
// tables that stay aligned when cells are coloured.
package ui

import (
	"io"
	"regexp"
	"strings"
)

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// Width is the number of columns s takes on a terminal: colour escapes
// take none. (East Asian wide characters are not accounted for.)
func Width(s string) int { return len([]rune(ansi.ReplaceAllString(s, ""))) }

// Table writes rows as columns separated by two spaces, each prefixed by
// indent. text/tabwriter counts colour escapes as text and so misaligns
// coloured cells; this counts what the terminal shows.
func Table(w io.Writer, indent string, rows [][]string) error {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], Width(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		b.WriteString(indent)
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-Width(c)+2))
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
