//go:build integration

package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

// A run whose log's file system fills up after its first line (issue 18,
// item 2) deploys, says on stderr that the log lost lines, and exits 11;
// it exited 0 in silence, the log ending in a line cut mid-word. The log
// is on a 12 KiB tmpfs in a private mount namespace (unshare, as root),
// filled with whole lines but for the first line's room. The next run,
// with room in its log, finds the truth on the cluster: up to date.
func TestRunLogLostMidRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a private mount namespace (unshare --mount) to fill a tmpfs")
	}
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	cfg, dir := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "")
	logDir := filepath.Join(dir, "logfs")
	body, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	body = []byte(strings.Replace(string(body), filepath.Join(dir, "autodeploy.log"), filepath.Join(logDir, "autodeploy.log"), 1))
	if err := os.WriteFile(cfg, body, 0o644); err != nil {
		t.Fatal(err)
	}
	// 12 KiB of whole 100-byte lines but for 188 bytes: room for "log
	// opened" (about 100), not for the run.
	var fill strings.Builder
	for i := 0; fill.Len() < 12*1024-200; i++ {
		line := "time=2026-11-25T00:00:00.000Z level=INFO msg=filler n=" + strconv.Itoa(100000+i) + " pad="
		fill.WriteString(line + strings.Repeat("x", 99-len(line)) + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "fill"), []byte(fill.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "autodeploy")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/autodeploy").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	refl.Push("api", reg+"api:sha-2")
	script := `mkdir -p "$LOGDIR" && mount -t tmpfs -o size=12k tmpfs "$LOGDIR" && cp "$DIR/fill" "$LOGDIR/autodeploy.log" || exit 99
"$BIN" "$@"
rc=$?
cp "$LOGDIR/autodeploy.log" "$DIR/log.copy"
exit $rc`
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh"}, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig)...)
	cmd.Env = append(os.Environ(), "DIR="+dir, "LOGDIR="+logDir, "BIN="+bin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if b, _ := os.ReadFile(filepath.Join(dir, "log.copy")); len(b) > 0 {
		t.Logf("log: %d bytes, ends:\n%s", len(b), b[max(0, len(b)-600):])
	}
	code := cmd.ProcessState.ExitCode()
	if code == 99 {
		t.Fatalf("setting up the tmpfs: %v\n%s", err, stderr.String())
	}
	if code != int(ExitLogLost) || !strings.Contains(stderr.String(), "lines could not be written to the log file "+filepath.Join(logDir, "autodeploy.log")) || !strings.Contains(stderr.String(), "no space left on device") || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q; want %d and one line saying the log lost lines", code, stdout.String(), stderr.String(), ExitLogLost)
	}
	log, err := os.ReadFile(filepath.Join(dir, "log.copy"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(log), "\n") || !strings.Contains(string(log), `msg="log opened"`) {
		t.Fatalf("the log does not end on a whole line after its first one:\n...%s", log[max(0, len(log)-300):])
	}
	if img := e.GetDeployment("api").Spec.Template.Spec.Containers[0].Image; img != reg+"api:sha-2" {
		t.Fatalf("the run did not deploy: image %s", img)
	}
	// The next run, its log with room again, reads what was done on the
	// cluster: nothing left to do.
	body = []byte(strings.Replace(string(body), filepath.Join(logDir, "autodeploy.log"), filepath.Join(dir, "next.log"), 1))
	if err := os.WriteFile(cfg, body, 0o644); err != nil {
		t.Fatal(err)
	}
	next, out, errOut := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig, "-o", "json")
	if next != ExitOK || !strings.Contains(out, `"outcome": "up-to-date"`) {
		t.Fatalf("next run: exit %d, stderr %q, summary:\n%s", next, errOut, out)
	}
}
