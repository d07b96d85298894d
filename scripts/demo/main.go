// Command demo shows autodeploy on the local cluster of `make cluster-up`:
// the seed's three services, their Flux objects, a new image pushed to one
// of them, a bad image pushed to another, and what `autodeploy run` does
// with each. api-generation is applied from git, as in the seed's GitOps
// hybrid: a Kustomization applies it and an ImageUpdateAutomation writes
// each new tag back to git. Then two staging -> production pipelines: web
// (kubectl-managed) and worker (applied from git, promoted through an
// ImagePolicy autodeploy owns), a deploy window and a hold that expires.
// Flux's controllers are played by fluxsim.
//
//	go run ./scripts/demo --kubeconfig K --autodeploy bin/autodeploy --dir D
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/testcluster"
)

const registry = "ghcr.io/team-mercurious/"

var services = []string{"api-gateway", "api-enrichment", "api-generation"}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the demo cluster")
	bin := flag.String("autodeploy", "bin/autodeploy", "autodeploy binary")
	dir := flag.String("dir", filepath.Join(testcluster.CacheDir(), "demo"), "where the demo's config, log and lock live")
	flag.Parse()
	if err := run(*kubeconfig, *bin, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, bin, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	// The stand-ins answer every reconcile request with a few requests:
	// client-go's default limit (5 per second) would make Flux look slow.
	cfg.QPS, cfg.Burst = 100, 300
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	confPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(confPath, []byte(demoConfig(dir, time.Time{})), 0o644); err != nil {
		return err
	}

	step("Setting up namespace apps with %s, and their Flux objects in flux-system", strings.Join(services, ", "))
	namespaces := []string{"apps", "flux-system", "staging", "production"}
	for _, ns := range namespaces {
		_ = kc.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	}
	for _, ns := range namespaces {
		if err := recreateNamespace(ctx, kc, ns); err != nil {
			return err
		}
	}
	refl, err := fluxsim.Start(ctx, dc, fluxsim.V1, "flux-system", func(err error) { fmt.Fprintln(os.Stderr, "fluxsim:", err) })
	if err != nil {
		return err
	}
	for _, s := range services {
		img := registry + s + ":sha-1a2b3c4"
		if s != gitService {
			if _, err := kc.AppsV1().Deployments("apps").Create(ctx, deployment(s, img), metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		if err := fluxsim.CreateRepository(ctx, dc, fluxsim.V1, "flux-system", s, registry+s); err != nil {
			return err
		}
		if err := fluxsim.CreatePolicy(ctx, dc, fluxsim.V1, "flux-system", s, s); err != nil {
			return err
		}
		if err := refl.Track(ctx, s, s, img); err != nil {
			return err
		}
	}
	// The pipeline: web in staging (its ImagePolicy) and in production
	// (promoted from staging).
	webImg := registry + "web:sha-1a2b3c4"
	for _, ns := range []string{"staging", "production"} {
		d := deployment("web", webImg)
		d.Namespace = ns
		if _, err := kc.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	if err := fluxsim.CreateRepository(ctx, dc, fluxsim.V1, "flux-system", "web", registry+"web"); err != nil {
		return err
	}
	if err := fluxsim.CreatePolicy(ctx, dc, fluxsim.V1, "flux-system", "web", "web"); err != nil {
		return err
	}
	if err := refl.Track(ctx, "web", "web", webImg); err != nil {
		return err
	}
	// worker: the same pipeline applied from git. Staging's image line
	// names its ImagePolicy; production's names the one autodeploy owns
	// for the promotion (created at the first promotion, not in git).
	workerImg := registry + "worker:sha-1a2b3c4"
	if err := fluxsim.CreateRepository(ctx, dc, fluxsim.V1, "flux-system", "worker", registry+"worker"); err != nil {
		return err
	}
	if err := fluxsim.CreatePolicy(ctx, dc, fluxsim.V1, "flux-system", "worker", "worker"); err != nil {
		return err
	}
	if err := refl.Track(ctx, "worker", "worker", workerImg); err != nil {
		return err
	}
	// api-generation lives in git; Flux applies it.
	gitDir := filepath.Join(dir, "git")
	if err := os.RemoveAll(gitDir); err != nil {
		return err
	}
	// One directory per environment: each manifest names its namespace.
	g, err := fluxsim.StartGitOps(ctx, cfg, fluxsim.GitOptions{
		Namespace: "flux-system", ManifestNamespaces: true, Dir: gitDir, Path: "./apps", ImageVersion: fluxsim.V1,
		Files: map[string]string{
			gitFile:                  fluxsim.EnvironmentManifest("apps", gitService, registry+gitService+":sha-1a2b3c4", "flux-system:"+gitService, 2),
			workerFile["staging"]:    fluxsim.EnvironmentManifest("staging", "worker", workerImg, "flux-system:worker", 2),
			workerFile["production"]: fluxsim.EnvironmentManifest("production", "worker", workerImg, "flux-system:"+ownedPolicy, 2),
		},
		OnError: func(err error) { fmt.Fprintln(os.Stderr, "fluxsim:", err) },
	})
	if err != nil {
		return err
	}
	for _, s := range services {
		if err := waitAvailable(ctx, kc, "apps", s); err != nil {
			return err
		}
	}
	for _, ns := range []string{"staging", "production"} {
		for _, s := range []string{"web", "worker"} {
			if err := waitAvailable(ctx, kc, ns, s); err != nil {
				return err
			}
		}
	}
	ad := func(args ...string) {
		args = append([]string{"--config", confPath, "--kubeconfig", kubeconfig}, args...)
		shown := make([]string, 0, len(args)-4)
		for _, a := range args[4:] {
			if strings.ContainsAny(a, " \t'\"$\\*?;&|<>()") {
				a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'" // as a shell reads it back
			}
			shown = append(shown, a)
		}
		fmt.Printf("\n$ autodeploy %s\n", strings.Join(shown, " "))
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Printf("(exit code %d)\n", cmd.ProcessState.ExitCode())
		}
	}

	step("Nothing new yet: a run has nothing to do")
	ad("run", "-v")

	step("CI pushes %s:sha-5d6e7f8; the next run asks Flux to rescan, sees it, deploys and verifies it", registry+"api-gateway")
	refl.Push("api-gateway", registry+"api-gateway:sha-5d6e7f8")
	ad("run", "-v")

	step("A broken image (its pull fails) reaches api-enrichment: the run fails fast, rolls back, remembers it")
	refl.Push("api-enrichment", registry+"api-enrichment:fail-9a8b7c6")
	ad("run", "-v")

	step("The next run skips the remembered bad image")
	ad("run", "-v")

	step("CI pushes %s:sha-7c8d9e0. It is applied from git by Flux: autodeploy deploys it at once, the ImageUpdateAutomation writes the same tag to git", registry+gitService)
	refl.Push(gitService, registry+gitService+":sha-7c8d9e0")
	ad("run", "-v")
	if err := showGit(ctx, g, registry+gitService+":sha-7c8d9e0", gitFile); err != nil {
		return err
	}
	step("Flux's next reconcile finds git and the cluster agree: nothing is applied, no second rollout")
	before := g.Applies()
	if err := g.Fetch(ctx); err != nil {
		return err
	}
	if err := g.ReconcileKustomization(ctx); err != nil {
		return err
	}
	fmt.Printf("kustomize-controller applied %d changes\n", g.Applies()-before)
	// autodeploy's marks are annotations, and a Deployment's generation
	// counts them: let the controller observe the last one first.
	if err := waitAvailable(ctx, kc, "apps", gitService); err != nil {
		return err
	}
	ad("status", gitService)

	step("Someone rolls api-gateway back by hand; the service is held, and runs leave it alone")
	ad("rollback", "api-gateway", "--reason", "demo: errors on /search")
	ad("history", "api-gateway")

	step("Staging -> production: CI pushes %s:sha-2b3c4d5; staging deploys it and watches it for its soak (8s) before calling it good", registry+"web")
	refl.Push("web", registry+"web:sha-2b3c4d5")
	ad("run", "-v", "--service", "web-staging,web")
	step("The next run promotes to production exactly what staging verified and soaked")
	ad("run", "-v", "--service", "web-staging,web")

	step("A build that crashes 5 s after it is Ready (%s:late-crash-3c4d5e6): its rollout passes in staging, its soak fails, it is rolled back and never reaches production", registry+"web")
	refl.Push("web", registry+"web:late-crash-3c4d5e6")
	ad("run", "-v", "--service", "web-staging,web")
	ad("status", "web-staging")

	step("The same pipeline applied from git: CI pushes %s:sha-4d5e6f7; staging deploys it, and the ImageUpdateAutomation writes it to staging's manifest", registry+"worker")
	refl.Push("worker", registry+"worker:sha-4d5e6f7")
	ad("run", "-v", "--service", "worker-staging,worker")
	step("The next run promotes it: it points ImagePolicy flux-system/%s (autodeploy's, not in git) at that tag, deploys, and git follows", ownedPolicy)
	ad("run", "-v", "--service", "worker-staging,worker")
	if err := showGit(ctx, g, registry+"worker:sha-4d5e6f7", workerFile["staging"], workerFile["production"]); err != nil {
		return err
	}
	if err := waitAvailable(ctx, kc, "production", "worker"); err != nil {
		return err
	}
	ad("status", "worker")

	step("A deploy window: production's web may start a rollout one hour a day only, from %s UTC; a new staging build waits outside it", windowOpens.Format("15:04"))
	if err := os.WriteFile(confPath, []byte(demoConfig(dir, windowOpens)), 0o644); err != nil {
		return err
	}
	refl.Push("web", registry+"web:sha-5e6f7a8")
	ad("run", "-v", "--service", "web-staging,web")
	ad("run", "-v", "--service", "web-staging,web")

	step("An operator holds api-enrichment for 2 hours while its team investigates; the hold releases itself at the first run after that")
	ad("hold", "api-enrichment", "--for", "2h", "--reason", "demo: investigating the bad build")
	ad("status", "api-enrichment")

	step("What an operator sees over SSH (exit code 8: not everything is healthy and up to date)")
	ad("status", "--log-lines", "3")
	fmt.Printf("\nThe demo cluster keeps running: export KUBECONFIG=%s; kubectl -n apps get deploy,pods\nStop it with: make cluster-down\n", kubeconfig)
	return nil
}

// gitService is the service the demo applies from git.
const gitService = "api-generation"

// ownedPolicy is the ImagePolicy autodeploy owns for the promotion of
// worker (its default name, autodeploy-<service>).
const ownedPolicy = "autodeploy-worker"

// The demo's git repository: one directory per environment.
var (
	gitFile    = "apps/apps/" + gitService + ".yaml"
	workerFile = map[string]string{"staging": "apps/staging/worker.yaml", "production": "apps/production/worker.yaml"}
)

// windowOpens is when production's deploy window opens: 12 hours from
// now, so that the demo runs outside it whenever it is run.
var windowOpens = time.Now().UTC().Add(12 * time.Hour).Truncate(time.Minute)

// showGit waits until every file's image line names image (the automation
// commits moments after the policy changed), then prints the commit at
// the head of the branch and those image lines.
func showGit(ctx context.Context, g *fluxsim.GitOps, image string, files ...string) error {
	lines := make([]string, len(files))
	for i, f := range files {
		for {
			c, err := g.File(f)
			if err != nil {
				return err
			}
			if strings.Contains(c, "image: "+image+" ") {
				for _, l := range strings.Split(c, "\n") {
					if strings.Contains(l, "image:") {
						lines[i] = f + ": " + strings.TrimSpace(l)
					}
				}
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("the automation never committed %s to %s: %w", image, f, ctx.Err())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	head, err := g.Head()
	if err != nil {
		return err
	}
	fmt.Printf("\n$ git log -1 --oneline; grep image: %s   (the demo's git repository)\n%s %s\n%s\n", strings.Join(files, " "), head[:7], fluxsim.AutomationMessage, strings.Join(lines, "\n"))
	return nil
}

func step(format string, args ...any) {
	fmt.Printf("\n\033[1m== "+format+"\033[0m\n", args...)
}

// demoConfig is the demo's config; a non-zero windowOpens gives
// production's web a deploy window of an hour a day from then.
func demoConfig(dir string, windowOpens time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# autodeploy demo config (written by scripts/demo)\nschedule: \"*/2 * * * *\"\nlockFile: %s\n", filepath.Join(dir, "autodeploy.lock"))
	fmt.Fprintf(&b, "log: {file: %s, maxSizeMB: 1, maxBackups: 2}\n", filepath.Join(dir, "autodeploy.log"))
	b.WriteString("flux: {namespace: flux-system, reconcileTimeout: 20s}\ndefaults: {namespace: apps, rolloutTimeout: 60s}\nservices:\n")
	for _, s := range services {
		fmt.Fprintf(&b, "  - name: %s\n", s)
	}
	b.WriteString("  # staging -> production\n  - name: web-staging\n    namespace: staging\n    deployment: web\n    imagePolicy: flux-system/web\n    soak: 8s\n")
	b.WriteString("  - name: web\n    namespace: production\n    promote: {from: web-staging}\n")
	if !windowOpens.IsZero() {
		fmt.Fprintf(&b, "    deployWindows: [{cron: \"%d %d * * *\", duration: 1h, timeZone: UTC}]\n", windowOpens.Minute(), windowOpens.Hour())
	}
	b.WriteString("  # the same pipeline, applied from git\n  - name: worker-staging\n    namespace: staging\n    deployment: worker\n    imagePolicy: flux-system/worker\n")
	b.WriteString("  - name: worker\n    namespace: production\n    promote: {from: worker-staging}\n")
	return b.String()
}

func recreateNamespace(ctx context.Context, kc kubernetes.Interface, ns string) error {
	// A namespace being deleted refuses new objects: wait until it is gone.
	for {
		_, err := kc.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	return testcluster.WaitDefaultServiceAccount(ctx, kc, ns)
}

func deployment(name, image string) *appsv1.Deployment {
	replicas := int32(2)
	zero, one := intstr.FromInt32(0), intstr.FromInt32(1)
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &zero, MaxSurge: &one}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image, Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
			},
		},
	}
}

func waitAvailable(ctx context.Context, kc kubernetes.Interface, ns, name string) error {
	for {
		d, err := kc.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == *d.Spec.Replicas && d.Status.UpdatedReplicas == *d.Spec.Replicas {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("deployment %s/%s never became available: %w", ns, name, ctx.Err())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
