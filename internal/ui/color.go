package ui

import "github.com/fatih/color"

// NewColor is color.New without its reading of NO_COLOR. color.New (and
// color.GreenString and the like, which cache what New made) pins NO_COLOR
// into each Color when it is made, and a pinned Color ignores
// color.NoColor: NO_COLOR then beat --color always, whereas a flag beats
// the variable (issue 18, item 9). A Color made here follows color.NoColor
// alone, which the CLI sets once from --color, NO_COLOR, the terminal and
// TERM.
func NewColor(attrs ...color.Attribute) *color.Color {
	return (&color.Color{}).Add(attrs...)
}

// The colours of the human output.
var (
	Green  = NewColor(color.FgGreen)
	Yellow = NewColor(color.FgYellow)
	Red    = NewColor(color.FgRed)
	Cyan   = NewColor(color.FgCyan)
)
