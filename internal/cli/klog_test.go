package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/klog/v2"
)

// client-go reports an answer whose body was cut (the connection closed
// before Content-Length bytes) through klog as well as in the error it
// returns: "Unexpected error when reading response body" was a stray
// second line on stderr, unescaped and unlike any of autodeploy's, on
// every command but the watch, which alone silenced klog (issue 18, fifth
// pass). Every command says the error once, as its own one line.
func TestKlogSilencedForEveryCommand(t *testing.T) {
	cut := cutAnswer
	cfg, _ := writeConfig(t, "")
	for _, args := range [][]string{{"status"}, {"run"}, {"hold", "api", "--reason", "x"}, {"history", "api"}} {
		t.Run(args[0], func(t *testing.T) {
			kc, _ := misbehavingServer(t, cut)
			// klog writes to os.Stderr itself, not to the command's
			// streams: catch it there, from a klog as a process starts.
			klog.ClearLogger()
			stderrFile := filepath.Join(t.TempDir(), "stderr")
			f, err := os.Create(stderrFile)
			if err != nil {
				t.Fatal(err)
			}
			saved := os.Stderr
			os.Stderr = f
			code, _, stderr := execute(t, nil, append(args, "--config", cfg, "--kubeconfig", kc, "--request-timeout", "5s")...)
			os.Stderr = saved
			klog.Flush()
			f.Close()
			b, err := os.ReadFile(stderrFile)
			if err != nil {
				t.Fatal(err)
			}
			if code == ExitOK {
				t.Fatalf("exit 0 on a cut answer; stderr: %s", stderr)
			}
			if len(b) != 0 {
				t.Errorf("klog wrote to the process's stderr:\n%s", b)
			}
			if !strings.Contains(stderr, "Error: ") {
				t.Errorf("the command did not say its error: %q", stderr)
			}
		})
	}
}
