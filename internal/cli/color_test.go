package cli

import (
	"strings"
	"testing"

	"github.com/fatih/color"
)

// --color always beats NO_COLOR, the convention for a flag and a variable
// (issue 18, item 9); auto honours NO_COLOR; never is never coloured.
// NO_COLOR is set in the process's environment too: fatih/color reads it
// there, not through the Factory.
func TestColorFlagBeatsNoColor(t *testing.T) {
	saved := color.NoColor
	defer func() { color.NoColor = saved }()
	cfg, _ := writeConfig(t, "")
	kc := unreachableKubeconfig(t)
	for _, tt := range []struct {
		flag    string
		noColor string
		want    bool
	}{
		{"always", "1", true},
		{"always", "", true},
		{"never", "", false},
		{"auto", "1", false}, // and not a terminal either
	} {
		t.Run(tt.flag+"/NO_COLOR="+tt.noColor, func(t *testing.T) {
			t.Setenv("NO_COLOR", tt.noColor)
			_, out, errOut := execute(t, map[string]string{"NO_COLOR": tt.noColor}, "doctor", "--color", tt.flag, "--config", cfg, "--kubeconfig", kc)
			if got := strings.Contains(out+errOut, "\x1b["); got != tt.want {
				t.Errorf("coloured = %v, want %v:\n%s%s", got, tt.want, out, errOut)
			}
		})
	}
}
