// Command bench measures autodeploy against the seed's bash algorithm on
// the same real local cluster, side by side, and prints a Markdown report:
//
//	make bench-compare    (go run ./scripts/bench --autodeploy bin/autodeploy)
//
// It starts a cluster of its own with the API server's audit log on (API
// requests are counted per tool by user agent), plays Flux's
// image-reflector-controller with fluxsim, and runs each tool as a child
// process, taking wall time, CPU time and peak memory from wait4.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/testcluster"
)

const reg = "ghcr.io/team-mercurious/"

func main() {
	bin := flag.String("autodeploy", "bin/autodeploy", "the autodeploy binary")
	sizes := flag.String("sizes", "3,50,500", "numbers of services for the no-op runs")
	runs := flag.Int("runs", 5, "runs per measurement (medians); 500 services get max(1, runs/5)")
	idle := flag.Duration("watch-idle", 0, "measure only autodeploy watch: idle this long with 50 services, then 5 pushes announced as by a Receiver")
	flag.Parse()
	if err := run(*bin, *sizes, *runs, *idle); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type env struct {
	kc        kubernetes.Interface
	dc        dynamic.Interface
	kubecfg   string
	audit     string
	bin       string
	scripts   string
	work      string
	refl      *fluxsim.Reflector
	flux, app string
}

func run(bin string, sizeList string, runs int, watchIdle time.Duration) error {
	ctx := context.Background()
	root, _ := os.Getwd()
	work, err := os.MkdirTemp("", "autodeploy-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	fmt.Fprintln(os.Stderr, "starting a cluster with the audit log on...")
	c, err := testcluster.Start(ctx, testcluster.Options{Dir: filepath.Join(work, "cluster"), RepoRoot: root, AuditLog: true})
	if err != nil {
		return err
	}
	defer c.Stop()
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 1000, 2000 // the stand-in controller must not be the bottleneck
	e := &env{kubecfg: c.Kubeconfig, audit: filepath.Join(c.Dir, "audit.log"), bin: mustAbs(bin), scripts: filepath.Join(root, "scripts", "bench"), work: work}
	if e.kc, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if e.dc, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}

	if watchIdle > 0 {
		out := &strings.Builder{}
		fmt.Fprintf(out, "Machine: %d cores, %s/%s, %s; Kubernetes v1.37.2 (local, KWOK nodes); %s.\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel(), runtime.Version())
		if err := e.watchIdle(ctx, out, 50, watchIdle, 5); err != nil {
			return err
		}
		fmt.Print(out.String())
		return nil
	}
	var sizes []int
	for _, s := range strings.Split(sizeList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		sizes = append(sizes, n)
	}
	out := &strings.Builder{}
	fmt.Fprintf(out, "Machine: %d cores, %s/%s, %s; Kubernetes v1.37.2 (local, KWOK nodes); %s; %s.\n\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel(), kubectlVersion(), runtime.Version())
	fmt.Fprintln(out, "### No-op run (nothing to deploy)")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| services | tool | wall (median) | CPU user+sys | peak RSS | API requests |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|")
	for _, n := range sizes {
		if err := e.setup(ctx, n); err != nil {
			return err
		}
		k := runs
		if n >= 500 {
			k = max(1, runs/5)
		}
		tools := []tool{e.baseline(n, false), e.autodeploy(n, false), e.baseline(n, true), e.autodeploy(n, true)}
		for _, t := range tools {
			m, err := e.measure(t, k)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "| %d | %s | %s | %s | %.0f MB | %d |\n", n, t.name, m.wall.Round(time.Millisecond), m.cpu.Round(time.Millisecond), float64(m.rss)/1024, m.requests)
			fmt.Fprintf(os.Stderr, "%d services, %s: %s\n", n, t.name, m.wall)
		}
	}

	fmt.Fprintln(out, "\n### One of three services changed")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| tool | total (median) | rollout itself | autodeploy's overhead after the rollout |")
	fmt.Fprintln(out, "|---|---|---|---|")
	if err := e.setup(ctx, 3); err != nil {
		return err
	}
	for _, which := range []string{"bash", "autodeploy"} {
		var totals, rollouts, overheads []time.Duration
		for i := range runs {
			img := fmt.Sprintf("%ssvc-000:sha-%s%07d", reg, map[string]string{"bash": "b", "autodeploy": "a"}[which], i)
			e.refl.Push("svc-000", img)
			t := e.baseline(3, false)
			if which == "autodeploy" {
				t = e.autodeploy(3, false)
			}
			logStart := fileSize(t.log)
			m, err := e.measure(t, 1)
			if err != nil {
				return err
			}
			totals = append(totals, m.wall)
			if which == "autodeploy" {
				roll, after := rolloutTimes(t.log, logStart)
				rollouts, overheads = append(rollouts, roll), append(overheads, after)
			}
		}
		if which == "bash" {
			fmt.Fprintf(out, "| bash (seed) | %s | (not separable) | |\n", median(totals).Round(time.Millisecond))
		} else {
			fmt.Fprintf(out, "| autodeploy | %s | %s | %s |\n", median(totals).Round(time.Millisecond), median(rollouts).Round(time.Millisecond), median(overheads).Round(time.Millisecond))
		}
	}

	fmt.Fprintln(out, "\n### Status")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| services | tool | wall (median) | API requests |")
	fmt.Fprintln(out, "|---|---|---|---|")
	for _, n := range []int{3, 500} {
		if !slices.Contains(sizes, n) && n != 3 {
			continue
		}
		if err := e.setup(ctx, n); err != nil {
			return err
		}
		k := runs
		if n >= 500 {
			k = max(1, runs/5)
		}
		for _, t := range []tool{e.checkStatus(), e.status(n)} {
			m, err := e.measure(t, k)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "| %d | %s | %s | %d |\n", n, t.name, m.wall.Round(time.Millisecond), m.requests)
		}
	}
	fmt.Print(out.String())
	return nil
}

// setup creates n services (Deployment, ImageRepository, ImagePolicy) in
// fresh namespaces, all up to date, and a Reflector answering for them.
func (e *env) setup(ctx context.Context, n int) error {
	fmt.Fprintf(os.Stderr, "setting up %d services...\n", n)
	suffix := fmt.Sprintf("%d-%d", n, time.Now().UnixNano()%100000)
	e.app, e.flux = "apps-"+suffix, "flux-"+suffix
	for _, ns := range []string{e.app, e.flux} {
		if _, err := e.kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	if err := testcluster.WaitDefaultServiceAccount(ctx, e.kc, e.app); err != nil {
		return err
	}
	refl, err := fluxsim.Start(ctx, e.dc, fluxsim.V1, e.flux, func(err error) { fmt.Fprintln(os.Stderr, "fluxsim:", err) })
	if err != nil {
		return err
	}
	e.refl = refl
	for i := range n {
		name := fmt.Sprintf("svc-%03d", i)
		img := reg + name + ":sha-0000000"
		if _, err := e.kc.AppsV1().Deployments(e.app).Create(ctx, deployment(name, img), metav1.CreateOptions{}); err != nil {
			return err
		}
		if err := fluxsim.CreateRepository(ctx, e.dc, fluxsim.V1, e.flux, name, reg+name); err != nil {
			return err
		}
		if err := fluxsim.CreatePolicy(ctx, e.dc, fluxsim.V1, e.flux, name, name); err != nil {
			return err
		}
		if err := refl.Track(ctx, name, name, img); err != nil {
			return err
		}
	}
	// Wait until every Deployment is available: the no-op runs must find
	// nothing to do and nothing in progress.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d Deployments not available after 5 minutes", n)
		}
		l, err := e.kc.AppsV1().Deployments(e.app).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		ready := 0
		for _, d := range l.Items {
			if d.Status.AvailableReplicas == 1 && d.Status.ObservedGeneration >= d.Generation {
				ready++
			}
		}
		if ready == n {
			break
		}
		time.Sleep(200 * time.Millisecond) // waiting on KWOK, outside any measurement
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "lockFile: %s/lock\nlog: {file: %s/autodeploy.log}\nflux: {namespace: %s}\ndefaults: {namespace: %s}\nservices:\n", e.work, e.work, e.flux, e.app)
	for i := range n {
		fmt.Fprintf(&cfg, "  - name: svc-%03d\n", i)
	}
	return os.WriteFile(filepath.Join(e.work, "config.yaml"), []byte(cfg.String()), 0o644)
}

func deployment(name, img string) *appsv1.Deployment {
	one, zero := int32(1), intstr.FromInt32(0)
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &zero}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: img}}}},
		},
	}
}

type tool struct {
	name  string
	cmd   []string
	env   []string
	agent string // user agent prefix of its API requests
	log   string
}

func (e *env) services(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("svc-%03d", i)
	}
	return s
}

func (e *env) baseEnv() []string {
	return append(os.Environ(), "KUBECONFIG="+e.kubecfg, "KUBECACHEDIR="+filepath.Join(e.work, "kubecache"), "NAMESPACE="+e.app, "FLUX_NAMESPACE="+e.flux, "LOG="+filepath.Join(e.work, "auto-deploy.log"))
}

func (e *env) baseline(n int, noReconcile bool) tool {
	t := tool{name: "bash (seed)", cmd: append([]string{"bash", filepath.Join(e.scripts, "auto-deploy-simple.sh")}, e.services(n)...), env: e.baseEnv(), agent: "kubectl"}
	if noReconcile {
		t.name += ", no rescan"
		t.env = append(t.env, "NO_RECONCILE=1")
	}
	return t
}

func (e *env) autodeploy(n int, noReconcile bool) tool {
	t := tool{name: "autodeploy", cmd: []string{e.bin, "run", "--config", filepath.Join(e.work, "config.yaml"), "--kubeconfig", e.kubecfg}, env: os.Environ(), agent: "autodeploy", log: filepath.Join(e.work, "autodeploy.log")}
	if noReconcile {
		t.name += " --no-reconcile"
		t.cmd = append(t.cmd, "--no-reconcile")
	}
	return t
}

func (e *env) checkStatus() tool {
	return tool{name: "check-status.sh style", cmd: []string{"bash", filepath.Join(e.scripts, "check-status.sh")}, env: e.baseEnv(), agent: "kubectl"}
}

func (e *env) status(n int) tool {
	return tool{name: "autodeploy status", cmd: []string{e.bin, "status", "--config", filepath.Join(e.work, "config.yaml"), "--kubeconfig", e.kubecfg}, env: os.Environ(), agent: "autodeploy"}
}

type measurement struct {
	wall, cpu time.Duration
	rss       int64 // KB
	requests  int
}

// measure runs t k times and returns medians.
func (e *env) measure(t tool, k int) (measurement, error) {
	var walls, cpus []time.Duration
	var rsss []int64
	var reqs []int
	for range k {
		off := fileSize(e.audit)
		cmd := exec.Command(t.cmd[0], t.cmd[1:]...)
		cmd.Env = t.env
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		start := time.Now()
		err := cmd.Run()
		wall := time.Since(start)
		if err != nil {
			if ee, ok := err.(*exec.ExitError); !ok || (ee.ExitCode() != 8 && t.name != "autodeploy status") {
				return measurement{}, fmt.Errorf("%s: %v", t.name, err)
			}
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		walls = append(walls, wall)
		cpus = append(cpus, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
		rsss = append(rsss, ru.Maxrss)
		reqs = append(reqs, countRequests(e.audit, off, t.agent))
	}
	return measurement{median(walls), median(cpus), medianOf(rsss), medianOf(reqs)}, nil
}

// countRequests counts the distinct requests of user agents starting with
// agent in the audit log after offset.
func countRequests(path string, offset int64, agent string) int {
	n := 0
	for _, c := range requestsBy(path, offset, agent) {
		n += c
	}
	return n
}

// rolloutTimes reads autodeploy's log after offset: the rollout itself
// (started -> complete), and what the run spent after it completed.
func rolloutTimes(path string, offset int64) (rollout, after time.Duration) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	f.Seek(offset, io.SeekStart)
	var started, complete, finished time.Time
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		ts, err := time.Parse("2006-01-02T15:04:05.000Z", strings.TrimPrefix(strings.Fields(l)[0], "time="))
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(l, `msg="rollout started"`):
			started = ts
		case strings.Contains(l, `msg="rollout complete"`):
			complete = ts
		case strings.Contains(l, `msg="run finished"`):
			finished = ts
		}
	}
	return complete.Sub(started), finished.Sub(complete)
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func median(ds []time.Duration) time.Duration { return medianOf(ds) }

func medianOf[T int | int64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			return strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
		}
	}
	return "unknown CPU"
}

func kubectlVersion() string {
	out, err := exec.Command("kubectl", "version", "--client").Output()
	if err != nil {
		return "kubectl ?"
	}
	return "kubectl " + strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "Client Version: ")
}
