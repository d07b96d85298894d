package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The man pages come from the command tree: golden like the help texts,
// and man renders them.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	if err := GenMan(dir, time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.1"))
	golden := repoPath(filepath.Join("testdata", "golden", "man"))
	if *update {
		os.RemoveAll(golden)
		os.MkdirAll(golden, 0o755)
	}
	want, _ := filepath.Glob(filepath.Join(golden, "*.1"))
	if !*update && len(want) != len(files) {
		t.Errorf("%d pages, %d golden (go test ./internal/cli -update)", len(files), len(want))
	}
	for _, f := range files {
		got, _ := os.ReadFile(f)
		g := filepath.Join(golden, filepath.Base(f))
		if *update {
			os.WriteFile(g, got, 0o644)
		}
		if w, err := os.ReadFile(g); err != nil || string(w) != string(got) {
			t.Errorf("%s differs from %s (go test ./internal/cli -update)", filepath.Base(f), g)
		}
	}
	for _, name := range []string{"autodeploy.1", "autodeploy-run.1", "autodeploy-rollback.1", "autodeploy-status.1"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("no page %s", name)
		}
	}
	manBin, err := exec.LookPath("man")
	if err != nil {
		t.Skip("man is not installed: the pages are checked, not rendered")
	}
	out, err := exec.Command(manBin, "-l", filepath.Join(dir, "autodeploy-run.1")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "autodeploy-run - Deploy the images Flux has detected") {
		t.Fatalf("man -l autodeploy-run.1: %v\n%s", err, out)
	}
}
