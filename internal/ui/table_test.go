package ui

import (
	"bytes"
	"testing"
)

func TestTableAlignsColouredCells(t *testing.T) {
	var buf bytes.Buffer
	red := func(s string) string { return "\x1b[31m" + s + "\x1b[0m" }
	err := Table(&buf, "  ", [][]string{
		{"NAME", "STATE", "X"},
		{"api", red("failed"), "1"},
		{"gateway", "healthy", "22"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "  NAME     STATE    X\n" +
		"  api      " + red("failed") + "   1\n" +
		"  gateway  healthy  22\n"
	if buf.String() != want {
		t.Errorf("got\n%q\nwant\n%q", buf.String(), want)
	}
	if Width(red("é✓")) != 2 {
		t.Errorf("Width = %d", Width(red("é✓")))
	}
}
