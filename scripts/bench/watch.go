package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
)

// watchIdle measures `autodeploy watch` (issue 20): idle for idle with n
// services, its resident memory, its CPU time and every API request it
// made meanwhile (from the audit log: only watches and their re-lists are
// expected); then pushes, each announced as a Flux Receiver does (a
// reconcile request on the ImageRepository), from the request to the new
// pod Ready.
func (e *env) watchIdle(ctx context.Context, out io.Writer, n int, idle time.Duration, pushes int) error {
	if err := e.setup(ctx, n); err != nil {
		return err
	}
	logPath := filepath.Join(e.work, "watch.log")
	cfg := filepath.Join(e.work, "config.yaml")
	// The schedule's full pass would rescan (and answer) during the idle
	// time: what is measured is the watch between events.
	b, err := os.ReadFile(cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(cfg, append([]byte("schedule: \"0 0 1 1 *\"\n"), bytes.Replace(b, []byte("autodeploy.log"), []byte("watch.log"), 1)...), 0o644); err != nil {
		return err
	}
	cmd := exec.Command(e.bin, "watch", "--config", cfg, "--kubeconfig", e.kubecfg)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	if err := waitLog(logPath, 0, 2*time.Minute, "trigger=start", `msg="run finished"`); err != nil {
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("%w\nstderr: %s\nlog:\n%s", err, stderr.String(), log[max(0, len(log)-3000):])
	}
	pid := cmd.Process.Pid
	off := fileSize(e.audit)
	cpu0 := cpuTime(pid)
	fmt.Fprintf(os.Stderr, "watch idle for %s with %d services...\n", idle, n)
	time.Sleep(idle) // the measurement itself: idle time
	cpu := cpuTime(pid) - cpu0
	rss, hwm, anon, file := memory(pid)
	reqs := requestsBy(e.audit, off, "autodeploy")
	fmt.Fprintf(out, "\n### autodeploy watch, idle\n\n")
	fmt.Fprintf(out, "%d services, idle for %s after its start pass: resident %.1f MB (%.1f MB its own memory, %.1f MB pages of files: the executable's, libc's; peak %.1f MB), CPU %s (%.3f%% of one core).\n\n",
		n, idle, float64(rss)/1024, float64(anon)/1024, float64(file)/1024, float64(hwm)/1024, cpu.Round(time.Millisecond), 100*cpu.Seconds()/idle.Seconds())
	fmt.Fprintln(out, "| API requests while idle | count |")
	fmt.Fprintln(out, "|---|---|")
	keys := make([]string, 0, len(reqs))
	for k := range reqs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(out, "| %s | %d |\n", k, reqs[k])
	}
	if len(keys) == 0 {
		fmt.Fprintln(out, "| (none) | 0 |")
	}

	fmt.Fprintf(out, "\n### autodeploy watch, a push announced by a Receiver\n\n")
	fmt.Fprintln(out, "| push | reconcile request -> patch | -> new pod Ready |")
	fmt.Fprintln(out, "|---|---|---|")
	var toPatch, toReady []time.Duration
	for i := range pushes {
		name := fmt.Sprintf("svc-%03d", i%n)
		img := fmt.Sprintf("%s%s:sha-%07d", reg, name, i+1)
		e.refl.Push(name, img)
		logOff := fileSize(logPath)
		start := time.Now()
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, fluxsim.ReconcileAnnotation, start.Format(time.RFC3339Nano))
		if _, err := e.dc.Resource(fluxsim.V1.GVR("imagerepositories")).Namespace(e.flux).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return err
		}
		var patched, ready time.Duration
		for ready == 0 {
			d, err := e.kc.AppsV1().Deployments(e.app).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if patched == 0 && d.Spec.Template.Spec.Containers[0].Image == img {
				patched = time.Since(start)
			}
			if patched != 0 && d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == 1 && d.Status.AvailableReplicas == 1 && d.Status.Replicas == 1 {
				ready = time.Since(start)
			}
			if time.Since(start) > time.Minute {
				return fmt.Errorf("push %d not deployed within a minute", i)
			}
			time.Sleep(5 * time.Millisecond) // sampling the Deployment: the measurement's resolution
		}
		if err := waitLog(logPath, logOff, time.Minute, "svc="+name, `msg="service done"`); err != nil {
			return err
		}
		toPatch, toReady = append(toPatch, patched), append(toReady, ready)
		fmt.Fprintf(out, "| %d | %s | %s |\n", i+1, patched.Round(time.Millisecond), ready.Round(time.Millisecond))
	}
	fmt.Fprintf(out, "| median | %s | %s |\n", median(toPatch).Round(time.Millisecond), median(toReady).Round(time.Millisecond))
	return nil
}

// waitLog waits until a line after offset contains every one of what.
func waitLog(path string, offset int64, timeout time.Duration, what ...string) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && int64(len(b)) > offset {
			for _, l := range strings.Split(string(b[offset:]), "\n") {
				if containsAll(l, what) {
					return nil
				}
			}
		}
		time.Sleep(50 * time.Millisecond) // polling a child's log, outside any measurement
	}
	return fmt.Errorf("%s: no line with %q within %s", path, what, timeout)
}

func containsAll(s string, what []string) bool {
	for _, w := range what {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// cpuTime is a process's user+system time (/proc/PID/stat, fields 14, 15).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// memory is a process's VmRSS, VmHWM, RssAnon and RssFile in KB.
func memory(pid int) (rss, hwm, anon, file int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		case "RssAnon":
			anon = n
		case "RssFile":
			file = n
		}
	}
	return rss, hwm, anon, file
}

// requestsBy counts the requests of user agents starting with agent in the
// audit log after offset, by verb and resource.
func requestsBy(path string, offset int64, agent string) map[string]int {
	out := map[string]int{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return out
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		var ev struct {
			AuditID   string `json:"auditID"`
			UserAgent string `json:"userAgent"`
			Verb      string `json:"verb"`
			ObjectRef struct {
				Resource string `json:"resource"`
			} `json:"objectRef"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || !strings.HasPrefix(ev.UserAgent, agent) || seen[ev.AuditID] {
			continue
		}
		seen[ev.AuditID] = true
		out[ev.Verb+" "+ev.ObjectRef.Resource]++
	}
	return out
}
