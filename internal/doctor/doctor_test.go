package doctor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/hosttest"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/status"
	"github.com/autodeploy-dev/autodeploy/internal/watch"
)

func cfg(t *testing.T, extra string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(extra+"services:\n  - name: api\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The lines of cron are TestScheduleLines'.
func TestSchedule(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	tests := []struct {
		name   string
		host   Host
		status string
		detail string
		fix    string
	}{
		{"systemd matches", Host{TimerFiles: []string{write("autodeploy.timer", "[Timer]\nOnCalendar=*-*-* *:00/2:00\n")}}, OK, "OnCalendar=*-*-* *:00/2:00, as configured", ""},
		{"nothing", Host{CronFiles: []string{write("other", "0 * * * * root backup.sh\n# */2 * * * * autodeploy run\n")}}, Warn, "no crontab, systemd timer or autodeploy watch", ""},
		{"a watch runs", Host{Watch: func() (lock.Holder, bool, error) {
			return lock.Holder{Pid: 42, Command: watch.State{Since: time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)}.Record()}, true, nil
		}}, OK, "autodeploy watch runs (pid 42, since 2026-12-03T06:00:00Z)", ""},
		{"a watch died", Host{WatchLock: "/run/autodeploy.lock.watch", Watch: func() (lock.Holder, bool, error) {
			return lock.Holder{Command: "host-a/7: " + watch.State{}.Record()}, false, nil
		}}, Warn, "an autodeploy watch (host-a/7) stopped without releasing its lock", "if it is retired, delete /run/autodeploy.lock.watch"},
		{"no watch record", Host{Watch: func() (lock.Holder, bool, error) { return lock.Holder{}, false, nil }}, Warn, "no crontab, systemd timer or autodeploy watch", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Report{}
			schedule(r, cfg(t, ""), tt.host)
			if len(r.Checks) != 1 || r.Checks[0].Status != tt.status || !strings.Contains(r.Checks[0].Detail, tt.detail) || !strings.Contains(r.Checks[0].Fix, tt.fix) {
				t.Fatalf("checks = %+v, want %s %q with fix %q", r.Checks, tt.status, tt.detail, tt.fix)
			}
		})
	}
}

// A cron line is "as configured" only when cron runs it and it runs this
// config (issue 18, item 4): Debian's cron ignores a whole /etc/cron.d
// file with a line it cannot parse or without the user field (the release
// test shows it, scripts/release TestDebianCronRunsWhatCronWrites), reads
// TZ=... as a variable, and a line that runs another config, a missing
// binary or only --dry-run deploys nothing of this one.
func TestScheduleLines(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin dir", "autodeploy")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	conf := filepath.Join(dir, "config.yaml")
	c := cfg(t, "")
	c.Path = conf
	q := "'" + bin + "'"
	other := filepath.Join(dir, "other.yaml")
	missing := filepath.Join(dir, "gone", "autodeploy")
	tests := []struct {
		name, file, status, detail string
		user                       bool // the user's crontab, no user field
	}{
		{"as configured", "*/2 * * * * root " + q + " run --config " + conf + " >/dev/null 2>&1\n", OK, "as configured", false},
		{"guarded, as configured", "SHELL=/bin/sh\n*/2 * * * * root [ -x " + q + " ] && " + q + " run --config=" + conf + "\n", OK, "as configured", false},
		{"default config", "*/2 * * * * root " + q + " run\n", Fail, "/etc/autodeploy/config.yaml", false},
		{"default config set by the file", "AUTODEPLOY_CONFIG=" + conf + "\n*/2 * * * * root " + q + " run\n", OK, "as configured", false},
		{"user crontab", "*/2 * * * * " + q + " run --config " + conf + "\n", OK, "as configured", true},
		{"another config", "*/2 * * * * root " + q + " run --config " + other + "\n", Fail, other, false},
		{"another config, global flag first", "*/2 * * * * root " + q + " --config " + other + " run\n", Fail, other, false},
		{"missing binary behind the guard", "*/2 * * * * root [ -x " + missing + " ] && " + missing + " run --config " + conf + "\n", Fail, missing, false},
		{"missing binary", "*/2 * * * * root " + missing + " run --config " + conf + "\n", Fail, missing, false},
		{"dry run", "*/2 * * * * root " + q + " run --dry-run --config " + conf + "\n", Fail, "--dry-run", false},
		{"no user field", "*/2 * * * * " + q + " run --config " + conf + "\n", Fail, "user field", false},
		{"unknown user", "*/2 * * * * nosuchuser-autodeploy " + q + " run --config " + conf + "\n", Fail, "nosuchuser-autodeploy", false},
		{"a broken line elsewhere in the file", "0 12 ? * * root /bin/true\n*/2 * * * * root " + q + " run --config " + conf + "\n", Fail, "ignores the whole file", false},
		{"a sign in the schedule", "+5 * * * * root /bin/true\n*/2 * * * * root " + q + " run --config " + conf + "\n", Fail, "ignores the whole file", false},
		{"an empty list item", "0 12 * * 1, root /bin/true\n*/2 * * * * root " + q + " run --config " + conf + "\n", Fail, "ignores the whole file", false},
		{"an empty list item first", ", * * * * root /bin/true\n*/2 * * * * root " + q + " run --config " + conf + "\n", Fail, "ignores the whole file", false},
		{"a time zone prefix", "TZ=UTC */2 * * * * root " + q + " run --config " + conf + "\n", Fail, "variable", false},
		// Wrappers are looked through (issue 18): the command they run
		// is judged, and what cannot be read is never "as configured".
		{"nice, dry run", "*/2 * * * * root nice -n 10 " + q + " run --config " + conf + " --dry-run\n", Fail, "--dry-run", false},
		{"nice, as configured", "*/2 * * * * root nice -n 10 " + q + " run --config " + conf + "\n", OK, "as configured", false},
		{"ionice and flock, as configured", "*/2 * * * * root ionice -c 3 flock -n /run/x.lock " + q + " run --config " + conf + "\n", OK, "as configured", false},
		{"timeout, another config", "*/2 * * * * root timeout 25m " + q + " run --config " + other + "\n", Fail, other, false},
		{"timeout with options, another config", "*/2 * * * * root timeout -k 30s --signal=TERM 25m " + q + " run --config " + other + "\n", Fail, other, false},
		{"env, dry run", "*/2 * * * * root /usr/bin/env " + q + " run --config " + conf + " --dry-run\n", Fail, "--dry-run", false},
		{"env with a variable, another config", "*/2 * * * * root env AUTODEPLOY_CONFIG=" + other + " " + q + " run\n", Fail, other, false},
		{"nice, missing binary", "*/2 * * * * root nice " + missing + " run --config " + conf + "\n", Fail, missing, false},
		// A wrapper that is not installed fails the line before autodeploy
		// starts (issue 18, third pass: doctor said "as configured").
		{"missing wrapper", "*/2 * * * * root " + filepath.Join(dir, "gone", "timeout") + " 25m " + q + " run --config " + conf + "\n", Fail, filepath.Join(dir, "gone", "timeout") + " is not installed", false},
		{"wrapper not on cron's PATH", "PATH=" + filepath.Join(dir, "empty") + "\n*/2 * * * * root ionice -c 3 " + q + " run --config " + conf + "\n", Fail, "ionice is not installed", false},
		{"kubectl plugin", "*/2 * * * * root kubectl autodeploy run --config " + conf + " --dry-run\n", Warn, "cannot tell", false},
		{"unknown wrapper", "*/2 * * * * root chronic " + q + " run --config " + conf + "\n", Warn, "cannot tell", false},
		{"variable prefix, another config", "*/2 * * * * root AUTODEPLOY_CONFIG=" + other + " " + q + " run\n", Fail, other, false},
		{"variable prefix, this config", "*/2 * * * * root AUTODEPLOY_CONFIG=" + conf + " " + q + " run\n", OK, "as configured", false},
		{"dry run =1", "*/2 * * * * root " + q + " run --config " + conf + " --dry-run=1\n", Fail, "--dry-run", false},
		{"dry run =True", "*/2 * * * * root " + q + " run --config " + conf + " --dry-run=True\n", Fail, "--dry-run", false},
		{"dry run =false", "*/2 * * * * root " + q + " run --config " + conf + " --dry-run=false\n", OK, "as configured", false},
		{"dry run =maybe", "*/2 * * * * root " + q + " run --config " + conf + " --dry-run=maybe\n", Fail, "--dry-run=maybe", false},
		{"sh -c, dry run", "*/2 * * * * root sh -c '\"" + bin + "\" run --config " + conf + " --dry-run'\n", Fail, "--dry-run", false},
		{"sh -c, as configured", "*/2 * * * * root /bin/sh -c \"" + q + " run --config " + conf + "\"\n", OK, "as configured", false},
		{"CRLF", "*/2 * * * * root " + q + " run --config " + conf + "\r\n", Fail, "carriage return", false},
		{"other schedule", "*/5 * * * * root " + q + " run --config " + conf + "\n", Warn, `but the config says "*/2 * * * *"`, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Host
			if tt.user {
				h.Crontab = func() (string, error) { return tt.file, nil }
			} else {
				p := filepath.Join(dir, fmt.Sprintf("cron%d", i))
				os.WriteFile(p, []byte(tt.file), 0o644)
				h.CronFiles = []string{p}
			}
			h.DefaultConfig = "/etc/autodeploy/config.yaml"
			r := &Report{}
			schedule(r, c, h)
			if len(r.Checks) != 1 || r.Checks[0].Status != tt.status || !strings.Contains(r.Checks[0].Detail, tt.detail) {
				t.Fatalf("%s\nchecks = %+v, want %s with %q", tt.file, r.Checks, tt.status, tt.detail)
			}
			if tt.status == Fail && (r.Checks[0].Fix == "" || !r.Failed) {
				t.Errorf("failed without a fix or without failing the report: %+v", r.Checks[0])
			}
		})
	}
}

func TestAlphabeticalSHA(t *testing.T) {
	pol := func(policy map[string]any, pattern string) *unstructured.Unstructured {
		spec := map[string]any{"policy": policy}
		if pattern != "" {
			spec["filterTags"] = map[string]any{"pattern": pattern}
		}
		return &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	}
	alpha := map[string]any{"alphabetical": map[string]any{"order": "asc"}}
	numeric := map[string]any{"numerical": map[string]any{"order": "asc"}}
	for _, tt := range []struct {
		u      *unstructured.Unstructured
		latest string
		want   bool
	}{
		{pol(alpha, "^sha-[a-f0-9]+$"), "ghcr.io/x/api:sha-1a2b3c4", true},
		{pol(alpha, ""), "ghcr.io/x/api:sha-1a2b3c4", true},
		{pol(alpha, "^v[0-9]+"), "ghcr.io/x/api:v12", false},
		{pol(numeric, "^main-[a-f0-9]+-(?P<ts>[0-9]+)"), "ghcr.io/x/api:main-1a2b-1732500000", false},
	} {
		if got, _ := alphabeticalSHA(tt.u, tt.latest); got != tt.want {
			t.Errorf("alphabeticalSHA(%v, %s) = %v", tt.u.Object, tt.latest, got)
		}
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
	c := cfg(t, "lockFile: "+filepath.Join(dir, "file", "lock")+"\nlog: {file: "+filepath.Join(dir, "new", "sub", "autodeploy.log")+"}\n")
	r := &Report{}
	files(context.Background(), r, c, nil)
	if r.Checks[0].Status != OK || r.Checks[1].Status != Fail || !r.Failed {
		t.Fatalf("checks = %+v", r.Checks)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("doctor left files behind: %v", entries)
	}
}

// A health credential that cannot be read here stops every deploy of the
// service (issue 17, item 3): doctor fails it, naming the variable or file;
// a readable one is OK.
func TestFilesHealthCredential(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("Bearer x\n"), 0o600)
	got, _ := fileChecks(t, dir, "services:\n"+
		"  - name: envless\n    health: {url: 'http://x/', authorizationEnv: AUTODEPLOY_TEST_UNSET_DOCTOR_TOKEN}\n"+
		"  - name: fileless\n    health: {url: 'http://x/', authorizationFile: "+filepath.Join(dir, "missing")+"}\n"+
		"  - name: fine\n    health: {url: 'http://x/', authorizationFile: "+token+"}\n"+
		"  - name: urlless\n    health: {urlEnv: AUTODEPLOY_TEST_UNSET_DOCTOR_URL}\n")
	if ch := got["health envless"]; ch.Status != Fail || !strings.Contains(ch.Detail, "AUTODEPLOY_TEST_UNSET_DOCTOR_TOKEN") || !strings.HasPrefix(ch.Fix, "set AUTODEPLOY_TEST_UNSET_DOCTOR_TOKEN in the environment runs have") {
		t.Errorf("envless: %+v", ch)
	}
	if ch := got["health fileless"]; ch.Status != Fail || !strings.Contains(ch.Detail, "missing") || !strings.HasPrefix(ch.Fix, "create ") || strings.Contains(ch.Fix, "environment") {
		t.Errorf("fileless: %+v", ch)
	}
	if ch := got["health fine"]; ch.Status != OK {
		t.Errorf("fine: %+v", ch)
	}
	// The URL from a variable as well (issue 18, item 1).
	if ch := got["health urlless"]; ch.Status != Fail || !strings.Contains(ch.Detail, "AUTODEPLOY_TEST_UNSET_DOCTOR_URL") {
		t.Errorf("urlless: %+v", ch)
	}
}

// doctor judges services as run does (deploy.Plan): an image run would
// refuse is a failure here too, with the fix.
func TestServicesAsRunSeesThem(t *testing.T) {
	c := cfg(t, "defaults: {namespace: apps}\n")
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "apps"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "ghcr.io/acme/api:sha-1"}}}}}}
	pol := func(name, tag string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"metadata": map[string]any{"name": "api", "namespace": "flux-system"},
			"status": map[string]any{"latestRef": map[string]any{"name": name, "tag": tag},
				"conditions": []any{map[string]any{"type": "Ready", "status": "True", "message": "ok"}}},
		}}
	}
	for _, tt := range []struct {
		name, image, tag string
		status, detail   string
	}{
		{"valid", "ghcr.io/acme/api", "sha-2", OK, "ImagePolicy flux-system/api selects ghcr.io/acme/api:sha-2"},
		{"uppercase repository", "GHCR.io/Acme/x", "sha-2", Fail, "bad repository component"},
		{"bad tag", "ghcr.io/acme/api", "bad tag!", Fail, "bad tag"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			objs := status.Objects{Deployments: map[string]*appsv1.Deployment{"apps/api": d}, Policies: map[string]*unstructured.Unstructured{"flux-system/api": pol(tt.image, tt.tag)}}
			r := &Report{}
			services(r, c, objs)
			if len(r.Checks) == 0 || r.Checks[0].Status != tt.status || !strings.Contains(r.Checks[0].Detail, tt.detail) {
				t.Fatalf("checks = %+v", r.Checks)
			}
			if tt.status == Fail && r.Checks[0].Fix == "" {
				t.Error("a failure without its fix")
			}
		})
	}
}

// doctor checks that git follows the policy of a service applied from git:
// no automation writing its tag fails (Flux would revert every deploy).
func TestGitOpsCheck(t *testing.T) {
	s := config.Service{Name: "api", PolicyNamespace: "flux-system", PolicyName: "api"}
	k := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "apps", "namespace": "flux-system"},
		"spec":     map[string]any{"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
	}}
	auto := unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "flux-system", "namespace": "flux-system"},
		"spec":     map[string]any{"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
		"status":   map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "True"}}},
	}}
	tests := []struct {
		name   string
		objs   status.Objects
		status string
		detail string
	}{
		{"git follows", status.Objects{Kustomizations: map[string]*unstructured.Unstructured{"flux-system/apps": k}, Automations: map[string][]unstructured.Unstructured{"flux-system": {auto}}}, OK, "ImageUpdateAutomation flux-system/flux-system writes"},
		{"no automation", status.Objects{Kustomizations: map[string]*unstructured.Unstructured{"flux-system/apps": k}}, Fail, "every deploy will be reverted by Flux"},
		{"labels name a missing Kustomization", status.Objects{}, Warn, "which does not exist"},
		{"cannot read", status.Objects{GitOpsProblem: "cannot read Flux Kustomization flux-system/apps: forbidden"}, Fail, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Report{}
			gitOps(r, "service api", s, "flux-system/apps", tt.objs)
			if len(r.Checks) != 1 || r.Checks[0].Status != tt.status || !strings.Contains(r.Checks[0].Detail, tt.detail) || tt.status != OK && r.Checks[0].Fix == "" {
				t.Errorf("checks = %+v, want %s containing %q with a fix", r.Checks, tt.status, tt.detail)
			}
		})
	}
}

// TestCheckLockFileThatIsAPipe: doctor hung on a lockFile naming a named
// pipe, opening it to write (issue 18, third pass); it fails the check.
func TestCheckLockFileThatIsAPipe(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "lock")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan *Report, 1)
	go func() { r := &Report{}; check(r, "lock", fifo); done <- r }()
	select {
	case r := <-done:
		if len(r.Checks) != 1 || r.Checks[0].Status != Fail || !strings.Contains(r.Checks[0].Detail, fifo+" is a named pipe, not a regular file") {
			t.Errorf("checks = %+v, want the lock failed as a named pipe", r.Checks)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("check still blocked on a named pipe after 5s")
	}
}

// A lockFile through a file (a config's path taken for a directory) failed
// with the fix "run as a user who may write <the file>", which no user can
// (issue 18, ninth pass): it names the file in the way and the key to set.
func TestCheckLockFileThroughAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(file, "autodeploy.lock"), filepath.Join(file, "run", "autodeploy.lock")} {
		r := &Report{}
		check(r, "lock", path)
		want := Check{Name: "lock", Status: Fail, Detail: path + " goes through " + strconv.Quote(file) + ", which is a file, not a directory", Fix: "change the path in the config to one in a directory"}
		if len(r.Checks) != 1 || r.Checks[0] != want {
			t.Errorf("check(%s) = %+v, want %+v", path, r.Checks, want)
		}
	}
}

// doctor follows each promotion back to its ImagePolicy (issue 19): a
// source that does not resolve fails, naming the service and the fix.
func TestPipelineCheck(t *testing.T) {
	c, err := config.Parse([]byte(`defaults: {namespace: apps}
services:
  - name: dev
    namespace: dev
    deployment: api
    imagePolicy: flux-system/api
  - name: staging
    namespace: staging
    deployment: api
    promote: {from: dev}
  - name: production
    namespace: production
    deployment: api
    promote: {from: staging, after: 30m}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dep := func(ns string, containers ...string) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns}}
		for _, n := range containers {
			d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers, corev1.Container{Name: n, Image: "ghcr.io/acme/api:sha-1"})
		}
		return d
	}
	pol := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "api", "namespace": "flux-system"}}}
	all := func() status.Objects {
		return status.Objects{
			Deployments: map[string]*appsv1.Deployment{"dev/api": dep("dev", "api"), "staging/api": dep("staging", "api"), "production/api": dep("production", "api")},
			Policies:    map[string]*unstructured.Unstructured{"flux-system/api": pol},
		}
	}
	tests := []struct {
		name        string
		mutate      func(*status.Objects)
		status      string
		detail, fix string
	}{
		{"the whole chain resolves", func(*status.Objects) {}, OK, "images from ImagePolicy flux-system/api through dev -> staging", ""},
		{"the source's Deployment is missing", func(o *status.Objects) { delete(o.Deployments, "staging/api") }, Fail,
			"Deployment staging/api of staging (promote.from of production) not found", "fix namespace/deployment of service staging in the config (line 7)"},
		{"a Deployment up the chain is missing", func(o *status.Objects) { delete(o.Deployments, "dev/api") }, Fail,
			"Deployment dev/api of dev (promote.from of staging) not found", "of service dev in the config (line 3)"},
		{"the source's container cannot be told", func(o *status.Objects) { o.Deployments["staging/api"] = dep("staging", "api", "sidecar") }, Fail,
			"has 2 containers (api, sidecar)", "set container of service staging in the config (line 7)"},
		{"the chain's ImagePolicy is missing", func(o *status.Objects) { delete(o.Policies, "flux-system/api") }, Fail,
			"ImagePolicy flux-system/api of dev, where production's images start, not found", "fix imagePolicy of service dev in the config (line 3)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := all()
			tt.mutate(&objs)
			r := &Report{}
			services(r, c, objs)
			var got *Check
			for i := range r.Checks {
				if r.Checks[i].Name == "service production" {
					got = &r.Checks[i]
				}
			}
			if got == nil || got.Status != tt.status || !strings.Contains(got.Detail, tt.detail) || !strings.Contains(got.Fix, tt.fix) {
				t.Fatalf("service production = %+v, want %s with %q, fix %q\nall: %+v", got, tt.status, tt.detail, tt.fix, r.Checks)
			}
		})
	}
}

// doctor checks each service's windows: they parse and load (Load
// refuses what does not, so a Config built by hand here), and a window
// that can never hold the service's rolloutTimeout plus soak is a warning:
// the defaults' windows are judged against the defaults' durations only.
func TestWindowsCheck(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC) // Wednesday, 11:00 in Paris
	c, err := config.Parse([]byte(`defaults:
  namespace: apps
  deployWindows: [{cron: "0 9 * * 1-5", duration: 1h, timeZone: Europe/Paris}]
services:
  - name: api
    imagePolicy: flux-system/api
  - name: slow
    imagePolicy: flux-system/api
    soak: 2h
  - name: feb30
    imagePolicy: flux-system/api
    deployWindows: [{cron: "0 9 30 2 *", duration: 1h}]
  - name: nightly
    imagePolicy: flux-system/api
    deployWindows: [{cron: "0 22 * * *", duration: 4h, timeZone: Europe/Paris}]
  - name: always
    imagePolicy: flux-system/api
    deployWindows: []
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	byHand := *c
	byHand.Services = append(slices.Clone(c.Services), config.Service{Name: "mars", RolloutTimeout: time.Minute,
		DeployWindows: []config.DeployWindow{{Cron: "0 9 * * *", Duration: time.Hour, TimeZone: "Mars/Olympus", Line: 40}}})
	r := &Report{}
	windows(r, &byHand, now)
	got := map[string]Check{}
	for _, ch := range r.Checks {
		if _, dup := got[ch.Name]; dup {
			t.Errorf("two checks named %s", ch.Name)
		}
		got[ch.Name] = ch
	}
	tests := []struct {
		name, status, detail, fix string
	}{
		{"windows api", OK, "windows parsed and zones loaded (1 window); each holds a rollout of 5m0s (rolloutTimeout plus soak); next opens Thu 09:00 Europe/Paris", ""},
		{"windows slow", Warn, "defaults.deployWindows[0] (line 3): 0 9 * * 1-5 for 1h0m0s (Europe/Paris) is shorter than the 2h5m0s a rollout takes at most", "lower rolloutTimeout or soak of slow, or give slow its own deployWindows"},
		{"windows feb30", Warn, "services[2].deployWindows[0] (line 12): 0 9 30 2 * for 1h0m0s (UTC) never opens", "fix the window's cron"},
		{"windows nightly", OK, "windows parsed and zones loaded (1 window); each holds a rollout of 5m0s (rolloutTimeout plus soak); next opens Wed 22:00 Europe/Paris", ""},
		{"windows mars", Fail, `services[5].deployWindows[0] (line 40): time zone "Mars/Olympus" does not load`, "fix the window in the config"},
	}
	for _, tt := range tests {
		ch, ok := got[tt.name]
		if !ok || ch.Status != tt.status || !strings.Contains(ch.Detail, tt.detail) || !strings.Contains(ch.Fix, tt.fix) {
			t.Errorf("%s = %+v, want %s with %q, fix %q", tt.name, ch, tt.status, tt.detail, tt.fix)
		}
		delete(got, tt.name)
	}
	for name, ch := range got {
		t.Errorf("unexpected check %s: %+v", name, ch)
	}
}

// A named pipe among /etc/cron.d's files (or a timer file) blocked doctor
// in its read forever, SIGTERM unheard (issue 18, fourth pass): cron
// ignores what is not a regular file, and doctor says so.
func TestScheduleFilesThatAreNotFiles(t *testing.T) {
	dir := t.TempDir()
	cron := hosttest.Mkfifo(t, filepath.Join(dir, "autodeploy"))
	timer := hosttest.Mkfifo(t, filepath.Join(dir, "autodeploy.timer"))
	r := &Report{}
	hosttest.Returns(t, "doctor's schedule check of a named pipe", func() {
		schedule(r, cfg(t, ""), Host{CronFiles: []string{cron, "/dev/zero"}, TimerFiles: []string{timer}})
	})
	for _, want := range []string{cron + " is a named pipe, not a regular file", "/dev/zero is a device, not a regular file", timer + " is a named pipe, not a regular file"} {
		found := false
		for _, c := range r.Checks {
			found = found || c.Name == "schedule" && c.Status == Warn && strings.Contains(c.Detail, want)
		}
		if !found {
			t.Errorf("no schedule warning saying %q; checks %+v", want, r.Checks)
		}
	}
}

// metrics.textfileDir naming a file, or a directory not there, passed
// config validate and doctor in silence while every run lost its metrics
// to a warning in the log (issue 18, fourth pass): doctor checks it as
// node_exporter's collector needs it, a directory runs may write.
func TestCheckTextfileDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	for _, tt := range []struct {
		name, textfileDir, status, detail string
	}{
		{"a directory", dir, OK, dir + " is writable"},
		{"a file", file, Fail, file + " is not a directory"},
		{"missing", filepath.Join(dir, "missing"), Fail, "no such file or directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg(t, "lockFile: "+filepath.Join(dir, "lock")+"\nlog: {file: "+filepath.Join(dir, "log")+"}\nmetrics: {textfileDir: "+tt.textfileDir+"}\n")
			r := &Report{}
			files(context.Background(), r, c, nil)
			for _, ch := range r.Checks {
				if ch.Name == "metrics" {
					if ch.Status != tt.status || !strings.Contains(ch.Detail, tt.detail) {
						t.Errorf("metrics check %+v, want %s saying %q", ch, tt.status, tt.detail)
					}
					return
				}
			}
			t.Errorf("no metrics check in %+v", r.Checks)
		})
	}
}

// A promoted service applied from git: doctor checks the ImagePolicy
// autodeploy owns for it (absent until the first promotion, autodeploy's,
// Ready), then that an ImageUpdateAutomation writes that policy to the
// Kustomization's source, as for a service with its own policy.
func TestGitOpsCheckOfAPromotion(t *testing.T) {
	s := config.Service{Name: "production", Promote: &config.Promote{From: "staging", PolicyNamespace: "flux-system", PolicyName: "autodeploy-production"}}
	k := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "apps", "namespace": "flux-system"},
		"spec":     map[string]any{"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
	}}
	auto := unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "flux-system", "namespace": "flux-system"},
		"spec":     map[string]any{"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
		"status":   map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "True"}}},
	}}
	owned := func(ours, ready bool) *unstructured.Unstructured {
		st := "False"
		if ready {
			st = "True"
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"metadata": map[string]any{"name": "autodeploy-production", "namespace": "flux-system"},
			"status": map[string]any{"latestRef": map[string]any{"name": "ghcr.io/acme/api", "tag": "sha-2"},
				"conditions": []any{map[string]any{"type": "Ready", "status": st, "message": "no image"}}},
		}}
		if ours {
			u.SetLabels(map[string]string{gitops.LabelManagedBy: gitops.ManagedByAutodeploy})
			u.SetAnnotations(map[string]string{gitops.AnnPromotionOf: "production"})
		}
		return u
	}
	withPolicy := func(u *unstructured.Unstructured) status.Objects {
		o := status.Objects{Kustomizations: map[string]*unstructured.Unstructured{"flux-system/apps": k}, Automations: map[string][]unstructured.Unstructured{"flux-system": {auto}}, Policies: map[string]*unstructured.Unstructured{}}
		if u != nil {
			o.Policies["flux-system/autodeploy-production"] = u
		}
		return o
	}
	tests := []struct {
		name        string
		objs        status.Objects
		owned       string // status of the owned-policy check
		ownedDetail string
		automation  string // status of the automation check
		automDetail string
	}{
		{"not created yet", withPolicy(nil), OK, "created at the first promotion", OK, "writes ImagePolicy flux-system/autodeploy-production's tag"},
		{"autodeploy's and Ready", withPolicy(owned(true, true)), OK, `is autodeploy's and selects ghcr.io/acme/api:sha-2; the target's image line in git must carry # {"$imagepolicy": "flux-system:autodeploy-production"}`, OK, "autodeploy-production"},
		{"not Ready", withPolicy(owned(true, false)), Warn, "is not Ready: no image", OK, "autodeploy-production"},
		{"someone else's", withPolicy(owned(false, true)), Fail, "is not autodeploy's", OK, "autodeploy-production"},
		{"no automation writes it", func() status.Objects { o := withPolicy(nil); o.Automations = nil; return o }(), OK, "created at the first promotion", Fail, "every deploy will be reverted by Flux"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Report{}
			gitOps(r, "service production", s, "flux-system/apps", tt.objs)
			if len(r.Checks) != 2 {
				t.Fatalf("checks = %+v, want the owned policy's and the automation's", r.Checks)
			}
			for i, want := range []struct{ status, detail string }{{tt.owned, tt.ownedDetail}, {tt.automation, tt.automDetail}} {
				c := r.Checks[i]
				if c.Status != want.status || !strings.Contains(c.Detail, want.detail) || (want.status != OK && c.Fix == "") {
					t.Errorf("check %d = %+v, want %s containing %q with a fix", i, c, want.status, want.detail)
				}
			}
		})
	}
}

// A notification URL or webhook secret that cannot be read here, or that
// is no URL, loses every notification of runs (issue 18, sixth pass:
// doctor said nothing, while it fails a health credential): doctor fails
// it, naming the variable or file, never what it holds.
func TestFilesNotifyURL(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("https://hooks.slack.com/services/T0/B0/s3cretpath\n"), 0o600)
	t.Setenv("AUTODEPLOY_TEST_DOCTOR_TOKEN", "xoxb-s3cret-token")
	t.Setenv("AUTODEPLOY_TEST_DOCTOR_HOOK", "https://hooks.example/s3cret")
	got, r := fileChecks(t, dir, "notify:\n"+
		"  - {name: envless, type: slack, urlEnv: AUTODEPLOY_TEST_UNSET_DOCTOR_HOOK}\n"+
		"  - {name: fileless, type: slack, urlFile: "+filepath.Join(dir, "missing")+"}\n"+
		"  - {name: token, type: discord, urlEnv: AUTODEPLOY_TEST_DOCTOR_TOKEN}\n"+
		"  - {name: secretless, type: webhook, urlEnv: AUTODEPLOY_TEST_DOCTOR_HOOK, secretEnv: AUTODEPLOY_TEST_UNSET_DOCTOR_SECRET}\n"+
		"  - {name: fine, type: slack, urlFile: "+good+"}\n"+
		"  - {name: inline, type: slack, url: 'https://hooks.slack.com/services/T0/B0/inline'}\nservices: []\n")
	for _, ch := range r.Checks {
		if strings.Contains(ch.Detail+ch.Fix, "s3cret") {
			t.Errorf("a secret shown: %+v", ch)
		}
	}
	for _, tt := range []struct {
		name   string
		status string
		detail string
	}{
		{"notify envless", Fail, "AUTODEPLOY_TEST_UNSET_DOCTOR_HOOK is empty or unset"},
		{"notify fileless", Fail, filepath.Join(dir, "missing")},
		{"notify token", Fail, "$AUTODEPLOY_TEST_DOCTOR_TOKEN: what it holds " + config.NotHTTP},
		{"notify secretless", Fail, "AUTODEPLOY_TEST_UNSET_DOCTOR_SECRET is empty or unset"},
		{"notify fine", OK, "can be read"},
	} {
		ch, ok := got[tt.name]
		if !ok || ch.Status != tt.status || !strings.Contains(ch.Detail, tt.detail) || (tt.status == Fail && ch.Fix == "") {
			t.Errorf("%s: %+v (found %v), want %v with %q and a fix", tt.name, ch, ok, tt.status, tt.detail)
		}
	}
	// Checked by Load when inline: nothing to read here.
	if ch, ok := got["notify inline"]; ok {
		t.Errorf("inline URL checked: %+v", ch)
	}
	if !r.Failed {
		t.Error("the report did not fail")
	}
}

// fileChecks is the report of files for a config of dir plus extra, by
// check name.
func fileChecks(t *testing.T, dir, extra string) (map[string]Check, *Report) {
	t.Helper()
	c, err := config.Parse([]byte("lockFile: "+filepath.Join(dir, "lock")+"\nlog: {file: "+filepath.Join(dir, "log")+"}\n"+extra), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := &Report{}
	files(context.Background(), r, c, nil)
	got := map[string]Check{}
	for _, ch := range r.Checks {
		got[ch.Name] = ch
	}
	return got, r
}

// A schedule that never fires ("0 0 31 2 *", cron's idiom for disabled)
// is accepted, but doctor says so: a cron line or timer of it runs nothing
// (issue 18, sixth pass: doctor said "as configured" and nothing else).
func TestScheduleThatNeverFires(t *testing.T) {
	for _, tt := range []struct {
		schedule string
		never    bool
	}{
		{"0 0 31 2 *", true},
		{"0 0 30 2 *", true},
		{"TZ=Europe/Paris 0 0 31 4 *", true},
		{"0 0 29 2 *", false}, // leap years
		{"*/2 * * * *", false},
		{"@every 1m", false},
	} {
		t.Run(tt.schedule, func(t *testing.T) {
			r := &Report{}
			schedule(r, cfg(t, "schedule: '"+tt.schedule+"'\n"), Host{})
			var got []Check
			for _, ch := range r.Checks {
				if strings.Contains(ch.Detail, "never fires") {
					got = append(got, ch)
				}
			}
			if !tt.never {
				if len(got) != 0 {
					t.Fatalf("checks = %+v for a schedule that fires", r.Checks)
				}
				return
			}
			if len(got) != 1 || got[0].Status != Warn || !strings.Contains(got[0].Detail, tt.schedule) || got[0].Fix == "" {
				t.Fatalf("checks = %+v, want one warning that %q never fires, with a fix", r.Checks, tt.schedule)
			}
		})
	}
}

// doctor says what status says of a service's marks set by hand to garbage,
// of a hold that names no one (never "held by : ..."), and of the missing
// ImagePolicy of a held service (never "ImagePolicy / is not Ready: ",
// Plan skipping it before the policy) (issue 18, tenth pass).
func TestServicesMarksSetByHand(t *testing.T) {
	c := cfg(t, "defaults: {namespace: apps}\n")
	for _, tt := range []struct {
		name   string
		ann    map[string]string
		detail string // "" when no warning is wanted
		fix    string
	}{
		{"none", nil, "", ""},
		{"garbled failed-image", map[string]string{"autodeploy.dev/failed-image": "{"}, `autodeploy's marks unreadable: autodeploy.dev/failed-image="{"`, "kubectl annotate deployment api -n apps autodeploy.dev/failed-image-"},
		{"garbled hold", map[string]string{"autodeploy.dev/hold": "{garbage"}, "held: unreadable hold annotation: {garbage", "autodeploy resume api"},
		{"hold by someone", map[string]string{"autodeploy.dev/hold": `{"by":"ann","reason":"freeze"}`}, "held by ann: freeze", "autodeploy resume api"},
		{"held, no ImagePolicy", map[string]string{"autodeploy.dev/hold": `{"by":"ann","reason":"freeze"}`}, "ImagePolicy flux-system/api not found (runs skip the service while it is held", "create the ImagePolicy"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "apps", Annotations: tt.ann},
				Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "ghcr.io/acme/api:sha-1"}}}}}}
			r := &Report{}
			services(r, c, status.Objects{Deployments: map[string]*appsv1.Deployment{"apps/api": d}})
			var found bool
			for _, ch := range r.Checks {
				if ch.Status == Warn && tt.detail != "" && strings.Contains(ch.Detail, tt.detail) && strings.Contains(ch.Fix, tt.fix) {
					found = true
				}
				if strings.Contains(ch.Detail, "held by :") || strings.Contains(ch.Detail, "ImagePolicy / ") || tt.detail == "" && (strings.Contains(ch.Detail, "held") || strings.Contains(ch.Detail, "marks")) {
					t.Errorf("check %+v", ch)
				}
			}
			if tt.detail != "" && !found {
				t.Errorf("no warning with %q (fix %q) in %+v", tt.detail, tt.fix, r.Checks)
			}
		})
	}
}
