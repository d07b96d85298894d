package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/config/invalid")

const testdata = "../../testdata/config"

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(src), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

func TestExample(t *testing.T) {
	cfg, err := Load(filepath.Join(testdata, "example.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	gw := Service{
		Name: "api-gateway", Namespace: "apps", Deployment: "api-gateway", Container: "api-gateway",
		PolicyNamespace: "flux-system", PolicyName: "api-gateway",
		RolloutTimeout: 3 * time.Minute, Soak: 2 * time.Minute, AutoRollback: true,
		Health: &Health{
			URL: Secret{Value: "http://127.0.0.1:8080/healthz"}, ExpectStatus: 200, ExpectBody: "{{.Tag}}",
			Timeout: 30 * time.Second, Interval: 2 * time.Second,
			Authorization: Secret{Env: "AUTODEPLOY_GATEWAY_HEALTH_AUTH"},
		},
	}
	plain := func(name string) Service {
		return Service{
			Name: name, Namespace: "apps", Deployment: name,
			PolicyNamespace: "flux-system", PolicyName: name,
			RolloutTimeout: 5 * time.Minute, AutoRollback: true,
		}
	}
	enrichment := plain("api-enrichment")
	enrichment.Health = &Health{URL: Secret{File: "/etc/autodeploy/enrichment-health-url"}, ExpectStatus: 200, Timeout: 30 * time.Second, Interval: 2 * time.Second,
		Authorization: Secret{File: "/etc/autodeploy/enrichment-health-auth"}}
	generation := plain("api-generation")
	generation.Health = &Health{URL: Secret{Env: "AUTODEPLOY_GENERATION_HEALTH_URL"}, ExpectStatus: 200, Timeout: 30 * time.Second, Interval: 2 * time.Second}
	want := []Service{gw, enrichment, generation}
	if len(cfg.Services) != len(want) {
		t.Fatalf("got %d services, want %d", len(cfg.Services), len(want))
	}
	for i, s := range cfg.Services {
		if s.Line == 0 {
			t.Errorf("services[%d].Line not set", i)
		}
		s.Line = 0
		wantWindow := "0 9 * * 1-5 for 8h0m0s (Europe/Paris)"
		if i == 0 {
			wantWindow = "0 22 * * * for 4h0m0s (UTC)"
		}
		if len(s.DeployWindows) != 1 || s.DeployWindows[0].String() != wantWindow || s.DeployWindows[0].Location == nil {
			t.Errorf("services[%d].DeployWindows = %v, want [%s]", i, s.DeployWindows, wantWindow)
		}
		s.DeployWindows = nil
		if !reflect.DeepEqual(s, want[i]) {
			t.Errorf("services[%d]:\n got %+v\nwant %+v", i, s, want[i])
		}
	}
	body, err := cfg.Services[0].Health.RenderBody("ghcr.io/team-mercurious/api-gateway:v1.4.2", "v1.4.2")
	if err != nil || body != "v1.4.2" {
		t.Errorf("RenderBody = %q, %v; want %q", body, err, "v1.4.2")
	}
}

// TestExampleSetsEveryKey keeps the example complete: a key added to the
// schema must be documented there.
func TestExampleSetsEveryKey(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testdata, "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	raw, d := decodeRaw(data)
	if len(d.problems) > 0 {
		t.Fatalf("problems: %v", d.problems)
	}
	all, set := map[string]bool{}, map[string]bool{}
	walkKeys(reflect.TypeOf(*raw), "", all)
	collectSet(reflect.ValueOf(*raw), "", set)
	// Keys that exclude one another in a single section: the one not set
	// is shown in a comment.
	alternative := map[string]bool{"metrics.pushgatewayFile": true, "services[].promote.from": true, "services[].promote.after": true, "services[].promote.imagePolicy": true}
	for k := range all {
		if alternative[k] {
			if name := k[strings.LastIndex(k, ".")+1:]; !regexp.MustCompile(`#\s+` + name + `: `).Match(data) {
				t.Errorf("example.yaml does not show key %s, even in a comment", k)
			}
			continue
		}
		if !set[k] {
			t.Errorf("example.yaml does not show key %s", k)
		}
	}
}

func walkKeys(t reflect.Type, path string, out map[string]bool) {
	for _, f := range fieldsOf(t) {
		p := join(path, f.key)
		ft := t.Field(f.index).Type
		switch {
		case reflect.PointerTo(ft).Implements(reflect.TypeOf((*scalar)(nil)).Elem()):
			out[p] = true
		case ft.Kind() == reflect.Slice:
			walkKeys(ft.Elem(), p+"[]", out)
		case ft.Kind() == reflect.Pointer:
			walkKeys(ft.Elem(), p, out)
		default:
			walkKeys(ft, p, out)
		}
	}
}

func collectSet(v reflect.Value, path string, out map[string]bool) {
	for _, f := range fieldsOf(v.Type()) {
		p := join(path, f.key)
		fv := v.Field(f.index)
		switch {
		case fv.Kind() == reflect.Struct && fv.FieldByName("Set").IsValid():
			if fv.FieldByName("Set").Bool() {
				out[p] = true
			}
		case fv.Kind() == reflect.Slice:
			for i := 0; i < fv.Len(); i++ {
				collectSet(fv.Index(i), p+"[]", out)
			}
		case fv.Kind() == reflect.Pointer:
			if !fv.IsNil() {
				collectSet(fv.Elem(), p, out)
			}
		default:
			collectSet(fv, p, out)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg := mustParse(t, "services:\n  - name: x\n")
	cfg.schedule = nil
	want := &Config{
		Schedule:   DefaultSchedule,
		LockFile:   DefaultLockFile,
		Lock:       Lock{Type: LockFile, LeaseNamespace: "flux-system", LeaseName: "autodeploy", LeaseDuration: 30 * time.Second},
		RunTimeout: 15 * time.Minute,
		Log: Log{
			File: "/var/log/autodeploy/autodeploy.log", MaxSizeMB: 10, MaxBackups: 5, MaxAgeDays: 30, Compress: true,
		},
		Flux:     Flux{Namespace: "flux-system", ReconcileTimeout: time.Minute},
		Defaults: Defaults{Namespace: "default", RolloutTimeout: 5 * time.Minute, AutoRollback: true},
		Services: []Service{{
			Name: "x", Namespace: "default", Deployment: "x",
			PolicyNamespace: "flux-system", PolicyName: "x",
			RolloutTimeout: 5 * time.Minute, AutoRollback: true, Line: 2,
		}},
		Path: "test.yaml",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestSectionDefaultsApplyToServices(t *testing.T) {
	cfg := mustParse(t, `
flux: {namespace: gitops}
defaults: {namespace: apps, rolloutTimeout: 2m, autoRollback: false}
log: {compress: false}
services:
  - name: a
  - name: b
    autoRollback: true
    rolloutTimeout: 90s
  - name: c
    health: {url: "https://c.example/healthz"}
`)
	if cfg.Log.Compress {
		t.Error("explicit compress: false was ignored")
	}
	a, b, c := cfg.Services[0], cfg.Services[1], cfg.Services[2]
	if a.Namespace != "apps" || a.RolloutTimeout != 2*time.Minute || a.AutoRollback || a.PolicyNamespace != "gitops" {
		t.Errorf("a did not inherit the defaults: %+v", a)
	}
	if !b.AutoRollback || b.RolloutTimeout != 90*time.Second {
		t.Errorf("b's own values were overridden: %+v", b)
	}
	want := Health{URL: Secret{Value: "https://c.example/healthz"}, ExpectStatus: 200, Timeout: 30 * time.Second, Interval: 2 * time.Second}
	if c.Health == nil || *c.Health != want {
		t.Errorf("c.Health = %+v, want %+v", c.Health, want)
	}
	if body, err := c.Health.RenderBody("img:v1", "v1"); body != "" || err != nil {
		t.Errorf("RenderBody with no expectBody = %q, %v", body, err)
	}
}

func TestMergeKeysAndAliases(t *testing.T) {
	cfg := mustParse(t, `
services:
  - &a
    name: a
    namespace: apps
    rolloutTimeout: 1m
  - <<: *a
    name: b
    namespace: other
`)
	if s := cfg.Services[1]; s.Name != "b" || s.Namespace != "other" || s.RolloutTimeout != time.Minute {
		t.Errorf("own key should win over merged one: %+v", s)
	}
}

func TestParseImagePolicy(t *testing.T) {
	for _, tc := range []struct {
		in, ns, name string
		err          bool
	}{
		{"api", "flux-system", "api", false},
		{"apps/api", "apps", "api", false},
		{"apps/api.v2", "apps", "api.v2", false},
		{"a/b/c", "", "", true},
		{"/api", "", "", true},
		{"apps/", "", "", true},
		{"", "", "", true},
		{"Apps/api", "", "", true},
		{"apps/API", "", "", true},
	} {
		ns, name, err := parseImagePolicy(tc.in, "flux-system")
		if (err != nil) != tc.err || ns != tc.ns || name != tc.name {
			t.Errorf("parseImagePolicy(%q) = %q, %q, %v; want %q, %q, error %v", tc.in, ns, name, err, tc.ns, tc.name, tc.err)
		}
	}
}

func TestServiceLookup(t *testing.T) {
	cfg := mustParse(t, "services:\n  - name: a\n  - name: b\n    namespace: apps\n")
	if s, ok := cfg.Service("b"); !ok || s.Name != "b" || s.Namespace != "apps" {
		t.Errorf("Service(b) = %+v, %v", s, ok)
	}
	if _, ok := cfg.Service("c"); ok {
		t.Error("Service(c) found a service that does not exist")
	}
}

func TestNext(t *testing.T) {
	now := time.Date(2025, 3, 14, 10, 31, 5, 0, time.UTC)
	for _, tc := range []struct {
		schedule string
		want     time.Time
	}{
		{"CRON_TZ=UTC */2 * * * *", time.Date(2025, 3, 14, 10, 32, 0, 0, time.UTC)},
		{"CRON_TZ=UTC 0 3 * * *", time.Date(2025, 3, 15, 3, 0, 0, 0, time.UTC)},
		{"@every 10m", now.Add(10 * time.Minute)},
		// Sunday as 7, as cron (crontab(5): "0 or 7 is Sunday") and
		// systemd read it; robfig's parser alone stops at 6.
		{"*/2 * * * 7", time.Date(2025, 3, 16, 0, 0, 0, 0, time.UTC)},
		{"0 12 * * 6-7", time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC)},
		{"0 12 * * 1-7/3", time.Date(2025, 3, 16, 12, 0, 0, 0, time.UTC)},
		{"0 12 * * 5,7", time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)},
		{"CRON_TZ=UTC 0 12 * * 7", time.Date(2025, 3, 16, 12, 0, 0, 0, time.UTC)},
	} {
		cfg := mustParse(t, "schedule: '"+tc.schedule+"'\nservices: [{name: x}]\n")
		if got := cfg.Next(now); !got.Equal(tc.want) {
			t.Errorf("%q: Next = %v, want %v", tc.schedule, got, tc.want)
		}
		// A Config built by hand still works.
		hand := Config{Schedule: tc.schedule}
		if got := hand.Next(now); !got.Equal(tc.want) {
			t.Errorf("%q: Next on hand-built Config = %v, want %v", tc.schedule, got, tc.want)
		}
	}
	for _, bad := range []string{"TZ=UTC", "0 12 * * 8", "0 12 * * 7-8"} {
		if got := (&Config{Schedule: bad}).Next(now); !got.IsZero() {
			t.Errorf("invalid schedule %q: Next = %v, want zero", bad, got)
		}
		if _, err := Parse([]byte("schedule: '"+bad+"'\nservices: [{name: x}]\n"), "c.yaml"); err == nil {
			t.Errorf("schedule %q accepted", bad)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path)
	var fe *FileError
	if !errors.As(err, &fe) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) = %v; want a *FileError wrapping fs.ErrNotExist", err)
	}
	msg := err.Error()
	for _, want := range []string{path, "--config", "AUTODEPLOY_CONFIG"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q is not one line", msg)
	}
}

func TestLoadDirectory(t *testing.T) {
	var fe *FileError
	if _, err := Load(t.TempDir()); !errors.As(err, &fe) {
		t.Fatalf("Load(dir) = %v; want a *FileError", err)
	}
}

// TestInvalid checks each file in testdata/config/invalid against the error
// text in its .golden file; run with -update to rewrite them.
func TestInvalid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdata, "invalid", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	sort.Strings(files)
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(data, name)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", cfg)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError: %v", err, err)
			}
			for i := 1; i < len(ve.Problems); i++ {
				if ve.Problems[i].Line < ve.Problems[i-1].Line {
					t.Errorf("problems not sorted by line: %v", ve.Problems)
				}
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("error text differs from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	service := fieldsOf(reflect.TypeOf(rawService{}))
	health := fieldsOf(reflect.TypeOf(rawHealth{}))
	for _, tc := range []struct {
		fields    []field
		key, want string
	}{
		{service, "rolloutTimout", "rolloutTimeout"},
		{service, "imagepolicy", "imagePolicy"},
		{service, "nme", "name"},
		{service, "helth", "health"},
		{service, "autoRollbackOn", "autoRollback"},
		{service, "image", ""},
		{service, "foo", ""},
		{service, "x", ""},
		{health, "timeoutSeconds", "timeout"},
		{health, "expectStatusCode", "expectStatus"},
		{health, "URL", "url"},
	} {
		if got := suggest(tc.key, tc.fields); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

// TestAliasBomb feeds merge keys that expand exponentially: the decoder
// follows aliases itself, so it must give up rather than hang. The lists
// of lists one is issue 18 item 7's 954 bytes (20 wide, 10 deep), which
// spun for over 11 minutes: merge walked nested lists without spending the
// budget, so once it ran out every one of the 20^9 leaves was still
// visited. The deadline is generous (the decoder now stops in milliseconds)
// and the old code blew it by orders of magnitude.
func TestAliasBomb(t *testing.T) {
	mappings := func() string {
		// merge keys that expand to 10^9 pairs
		var b strings.Builder
		b.WriteString("services:\n  - &a0 {name: s0}\n")
		for i := 1; i < 10; i++ {
			prev := "*a" + strconv.Itoa(i-1)
			b.WriteString("  - &a" + strconv.Itoa(i) + " {<<: [" + strings.Repeat(prev+", ", 9) + prev + "], name: s" + strconv.Itoa(i) + "}\n")
		}
		return b.String()
	}
	lists := func(width, depth int) string {
		// <<: a list of lists of ... of one mapping, width^(depth-1)
		// leaves; the anchors sit under a key the decoder does not walk,
		// so the one merge key meets the whole expansion at once.
		var b strings.Builder
		b.WriteString("x-anchors:\n  - &s0 {name: s0}\n")
		for i := 1; i < depth; i++ {
			prev := "*s" + strconv.Itoa(i-1)
			b.WriteString("  - &s" + strconv.Itoa(i) + " [" + strings.Repeat(prev+", ", width-1) + prev + "]\n")
		}
		b.WriteString("services:\n  - <<: *s" + strconv.Itoa(depth-1) + "\n")
		return b.String()
	}
	for _, tt := range []struct{ name, doc string }{
		{"mappings 10 wide", mappings()},
		{"lists 10 wide", lists(10, 10)},
		{"lists 20 wide", lists(20, 10)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := Parse([]byte(tt.doc), "bomb.yaml")
				done <- err
			}()
			select {
			case err := <-done:
				if want := "bomb.yaml: document too complex (too many aliases or merge keys)"; err == nil || err.Error() != want {
					t.Fatalf("got %v, want %q", err, want)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("Parse of %d bytes still running after 20s", len(tt.doc))
			}
		})
	}
}

// FuzzLoad checks that no input makes Parse panic, and that every failure
// is a *ValidationError the CLI can map to its exit code.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join(testdata, "invalid", "*.yaml"))
	seeds = append(seeds, filepath.Join(testdata, "example.yaml"))
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("services: [{name: x, health: {url: 'http://h', expectBody: '{{.Image}}'}}]\n---\n"))
	f.Add([]byte("schedule: TZ=UTC\nservices: [&a {name: x}, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("bad error %T: %v", err, err)
			}
			return
		}
		if len(cfg.Services) == 0 && !bytes.Contains(data, []byte("services")) {
			t.Fatal("valid config without a services list")
		}
		for _, s := range cfg.Services {
			if s.Name == "" || s.Namespace == "" || s.Deployment == "" || s.PolicyName == "" {
				t.Fatalf("unresolved service %+v", s)
			}
		}
	})
}

// An explicit empty list is a config not filled in yet (the packaged one):
// valid. A file without the list stays an error (testdata/config/invalid/
// no-services.yaml, empty.yaml): it is more likely truncated than meant.
func TestNoServicesYet(t *testing.T) {
	cfg, err := Parse([]byte("schedule: \"@hourly\"\nservices: []\n"), "config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Services) != 0 {
		t.Errorf("services = %+v, want none", cfg.Services)
	}
}

// log.file must name a regular file, one not there yet, or a symlink to a
// regular file; anything else is an error of the file, with its line and
// why, found when the config is loaded (Parse does no I/O). A FIFO blocked
// every run's first write forever (issue 18, item 8).
func TestLoadChecksLogFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o640); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(dir, "regular.log")
	if err := os.WriteFile(regular, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	link := func(name, target string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, file string
		want       string // the problem after "log.file: <file> "; "" for none
	}{
		{"a directory", dir, "is a directory (name a file in it, such as " + strconv.Quote(filepath.Join(dir, "autodeploy.log")) + ")"},
		{"a FIFO", fifo, "is a named pipe (FIFO): a write to it waits for a reader, forever under cron (name a regular file)"},
		{"a symlink to a FIFO", link("to-fifo.log", fifo), "is a symlink to " + strconv.Quote(fifo) + ", which is a named pipe (FIFO): a write to it waits for a reader, forever under cron (name a regular file)"},
		{"a device", "/dev/null", `is a character device: the log must be a regular file, which rotates and which status reads back (name one, or "-" for standard output)`},
		{"a dangling symlink", link("dangling.log", filepath.Join(dir, "gone.log")), "is a symlink to " + strconv.Quote(filepath.Join(dir, "gone.log")) + ", which does not exist (create it, or point log.file at a file)"},
		{"a regular file", regular, ""},
		{"a file not there yet", filepath.Join(dir, "new.log"), ""},
		{"a symlink to a regular file", link("to-regular.log", regular), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "autodeploy.yaml")
			src := "log:\n  file: " + tt.file + "\nservices:\n  - name: api\n"
			if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Load = %v, want no error", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != 1 {
				t.Fatalf("Load = %v; want one validation problem", err)
			}
			if want := path + ":2: log.file: " + strconv.Quote(tt.file) + " " + tt.want; err.Error() != want {
				t.Fatalf("error:\n got %s\nwant %s", err, want)
			}
			if _, err := Parse([]byte(src), "mem.yaml"); err != nil {
				t.Fatalf("Parse looked at the file system: %v", err)
			}
		})
	}
}

// lockFile may be neither the log nor the log's own lock, whichever of the
// two keys is given.
func TestLockFileIsNotTheLog(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"lockFile: /var/log/a.log\nlog: {file: /var/log/a.log}\n",
			`t.yaml:1: lockFile: "/var/log/a.log" is also log.file (taking the lock would overwrite the log); use another path, such as the default "/run/lock/autodeploy.lock"`},
		{"log:\n  file: /run/lock/autodeploy\n",
			`t.yaml:2: log.file: the default lockFile "/run/lock/autodeploy.lock" is the lock log.file takes around each line (a run would wait for itself); set lockFile or use another log.file`},
		{"lock: {type: lease}\nlockFile: /var/log/a.log.lock\nlog: {file: /var/log/a.log}\n", ""},
	} {
		_, err := Parse([]byte(tc.src+"services:\n  - name: api\n"), "t.yaml")
		if got := fmt.Sprint(err); (err == nil) != (tc.want == "") || (err != nil && got != tc.want) {
			t.Errorf("%q:\n got %v\nwant %s", tc.src, err, tc.want)
		}
	}
}

// The run's deadline covers the rescan, the budget, the rollback of the
// last service (which outlives the budget) and its notifications, and the
// outside backstops are longer: a backstop at runTimeout + 60 s killed runs
// exactly while they rolled back.
func TestRunDeadline(t *testing.T) {
	cfg, err := Parse([]byte(`runTimeout: 10m
flux: {reconcileTimeout: 1m}
defaults: {rolloutTimeout: 3m}
notify:
  - {type: slack, url: "https://hooks.slack.com/services/x", timeout: 5s}
services:
  - name: a
  - name: b
    rolloutTimeout: 7m
`), "deadline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := time.Minute + 10*time.Minute + 7*time.Minute + (2*5*time.Second + time.Second) + runOverhead
	if got := cfg.RunDeadline(); got != want {
		t.Errorf("RunDeadline = %s, want %s", got, want)
	}
	if got := time.Duration(cfg.BackstopSeconds()) * time.Second; got <= cfg.RunTimeout+7*time.Minute+time.Minute {
		t.Errorf("backstop %s would cut the last rollback (runTimeout %s + rolloutTimeout 7m after a 1m rescan)", got, cfg.RunTimeout)
	}
}

// Absurd values are refused where they are written: they overflowed the
// deadline and backstops, or rotated the log at every line.
func TestBounds(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"runTimeout: 2000000h\n", "runTimeout: must be at most 24h0m0s, got 2000000h0m0s"},
		{"defaults: {rolloutTimeout: 25h}\n", "must be at most 24h0m0s"},
		{"log: {maxSizeMB: 99999999999999}\n", "must be at most 100000"},
		{"lock: {type: lease, leaseDuration: 1ms}\n", "must be at least 5s, got 1ms"},
		// Beyond time.Duration: out of range, not a syntax error.
		{"runTimeout: 99999999999h\n", `bounds.yaml:1: runTimeout: invalid duration "99999999999h" (out of range: the longest is 2562047h)`},
		{"runTimeout: 5 min\n", `invalid duration "5 min" (use Go syntax such as 90s, 5m, 1h)`},
	} {
		_, err := Parse([]byte(tt.yaml+"services:\n  - name: api\n"), "bounds.yaml")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.yaml, err, tt.want)
		}
	}
}

// A rollout that outlasts the run's budget would be left unverified by every
// run, and a broken one never rolled back.
func TestRolloutLongerThanRun(t *testing.T) {
	_, err := Parse([]byte("runTimeout: 5s\nservices:\n  - name: api\n    rolloutTimeout: 20s\n"), "budget.yaml")
	if err == nil || !strings.Contains(err.Error(), `rolloutTimeout 20s is longer than runTimeout 5s`) || !strings.Contains(err.Error(), "budget.yaml:4:") {
		t.Fatalf("Parse = %v", err)
	}
}

// apiVersion and kind are optional; another version is refused by name.
func TestAPIVersion(t *testing.T) {
	if _, err := Parse([]byte("apiVersion: autodeploy.dev/v1alpha1\nkind: Config\nservices:\n  - name: api\n"), "v.yaml"); err != nil {
		t.Fatalf("current version: %v", err)
	}
	_, err := Parse([]byte("apiVersion: autodeploy.dev/v2\nkind: Config\nservices:\n  - name: api\n"), "v.yaml")
	if err == nil || !strings.Contains(err.Error(), `v.yaml:1: apiVersion: unknown apiVersion "autodeploy.dev/v2": this autodeploy reads autodeploy.dev/v1alpha1`) {
		t.Fatalf("another version: %v", err)
	}
	_, err = Parse([]byte("kind: Deployment\nservices:\n  - name: api\n"), "v.yaml")
	if err == nil || !strings.Contains(err.Error(), `unknown kind "Deployment"`) {
		t.Fatalf("another kind: %v", err)
	}
}

func TestHealthAuthorization(t *testing.T) {
	_, err := Parse([]byte("services:\n  - name: api\n    health: {url: http://a/h, authorizationEnv: X, authorizationFile: /f}\n"), "h.yaml")
	if err == nil || !strings.Contains(err.Error(), "set one of authorizationEnv and authorizationFile, not both") {
		t.Fatalf("both: %v", err)
	}
	_, err = Parse([]byte("services:\n  - name: api\n    health: {url: http://a/h, authorizationFile: relative}\n"), "h.yaml")
	if err == nil || !strings.Contains(err.Error(), "authorizationFile") {
		t.Fatalf("relative file: %v", err)
	}
}

// A URL refused by validation is quoted redacted: `config validate` runs
// in CI logs and terminals (issue 18, item 1).
func TestInvalidURLRedacted(t *testing.T) {
	for _, src := range []string{
		"services:\n  - name: api\n    health: {url: \"ops:s3cr3t@api.local/health?private_token=s3cr3t\"}\n",
		"metrics: {pushgateway: \"ops:s3cr3t@gw.local:9091\"}\nservices:\n  - name: api\n",
	} {
		_, err := Parse([]byte(src), "u.yaml")
		if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "must be an absolute http or https URL") {
			t.Errorf("Parse(%q) = %v", src, err)
		}
	}
}

// A health URL that holds a credential can be kept out of the file, as a
// notification URL can: urlEnv or urlFile, exactly one of the three
// (issue 18, item 1: manifests cronjob moves it to the Secret so).
func TestHealthURLSources(t *testing.T) {
	for _, tt := range []struct {
		health string
		want   Secret
		err    string
	}{
		{"{url: 'https://a/h'}", Secret{Value: "https://a/h"}, ""},
		{"{urlEnv: API_HEALTH_URL}", Secret{Env: "API_HEALTH_URL"}, ""},
		{"{urlFile: /run/secrets/api-health-url}", Secret{File: "/run/secrets/api-health-url"}, ""},
		{"{urlFile: relative}", Secret{}, "must be an absolute path"},
		{"{url: 'https://a/h', urlEnv: X}", Secret{}, "give exactly one of url, urlEnv or urlFile (got 2)"},
		{"{expectStatus: 200}", Secret{}, `missing required key "url" (or urlEnv, urlFile)`},
	} {
		cfg, err := Parse([]byte("services:\n  - name: api\n    health: "+tt.health+"\n"), "h.yaml")
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err = %v, want %q", tt.health, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.health, err)
			continue
		}
		if got := cfg.Services[0].Health.URL; got != tt.want {
			t.Errorf("%s: URL = %+v, want %+v", tt.health, got, tt.want)
		}
	}
}

// A path the manifests copy into a cron file, a unit or a comment may hold
// no line break or other control character: a line break in log.file put a
// line of its own into /etc/cron.d, which Debian's cron ran as root (issue
// 18, review item 1). Each path key is refused, with its line.
func TestPathsRefuseControlCharacters(t *testing.T) {
	const why = "must not hold a line break or another control character (cron, systemd and the manifests' comments cannot hold one), got "
	for _, tt := range []struct{ name, src, want string }{
		{"log.file with a cron line", "log: {file: \"/tmp/x\\n* * * * * root touch /tmp/PWNED\\n#\"}\n",
			`t.yaml:1: log.file: ` + why + `"/tmp/x\n* * * * * root touch /tmp/PWNED\n#"`},
		{"log.file with a CR", "log: {file: \"/tmp/x\\r.log\"}\n", `t.yaml:1: log.file: ` + why + `"/tmp/x\r.log"`},
		{"log.file with ESC", "log: {file: \"/tmp/x\\e[2J.log\"}\n", `t.yaml:1: log.file: ` + why + `"/tmp/x\x1b[2J.log"`},
		{"log.file with a line separator", "log: {file: \"/tmp/x\\u2028.log\"}\n", `t.yaml:1: log.file: ` + why + `"/tmp/x\u2028.log"`},
		{"log.file with a bidi override", "log: {file: \"/tmp/x\\u202e.log\"}\n", `t.yaml:1: log.file: ` + why + `"/tmp/x\u202e.log"`},
		{"lockFile", "lockFile: \"/run/x\\n* * * * * root id\"\n", `t.yaml:1: lockFile: ` + why + `"/run/x\n* * * * * root id"`},
		{"a health urlFile", "services:\n  - name: api\n    health: {urlFile: \"/etc/x\\nb\"}\n", `t.yaml:3: services[0].health.urlFile: ` + why + `"/etc/x\nb"`},
		{"metrics.textfileDir", "metrics: {textfileDir: \"/var/x\\tb\"}\n", `t.yaml:1: metrics.textfileDir: ` + why + `"/var/x\tb"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), "t.yaml")
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse = %v; want a validation error", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error:\n got %s\nwant a line %s", err, tt.want)
			}
		})
	}
	// A plain path with spaces, % and UTF-8 stays allowed: it is quoted.
	if _, err := Parse([]byte("log: {file: \"/var/log/auto deploy/ünï%.log\"}\nservices:\n  - name: api\n"), "t.yaml"); err != nil {
		t.Fatalf("Parse = %v; want no error", err)
	}
}

// A log.file that cannot be opened however often a run tries is refused
// by validation, not first by the run (issue 18, review item 6).
func TestLoadChecksLogFileLoopsAndSlashes(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	if err := os.Symlink(b, a); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(a, b); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, file, want string }{
		{"a symlink loop", a, "is a symlink to " + strconv.Quote(b) + " in a loop of symlinks (point log.file at a file)"},
		{"a trailing slash", filepath.Join(dir, "new.log") + "/", "ends in a slash, which names a directory (name a file, such as " + strconv.Quote(filepath.Join(dir, "new.log")) + ")"},
		{"a trailing slash on a file", filepath.Join(dir, "b.log") + "/", "ends in a slash, which names a directory (name a file, such as " + strconv.Quote(filepath.Join(dir, "b.log")) + ")"},
		// A path through a file passed validation; the run then said
		// "free space on its file system or fix its permissions", doctor
		// the same (issue 18, ninth pass).
		{"a path through a file", filepath.Join(file, "logs", "autodeploy.log"), "goes through " + strconv.Quote(file) + ", which is a file, not a directory (name a path in a directory)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := LogFileProblem(tt.file); got != tt.want {
				t.Fatalf("LogFileProblem(%q):\n got %q\nwant %q", tt.file, got, tt.want)
			}
			path := filepath.Join(t.TempDir(), "autodeploy.yaml")
			if err := os.WriteFile(path, []byte("log:\n  file: "+tt.file+"\nservices:\n  - name: api\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if want := path + ":2: log.file: " + strconv.Quote(tt.file) + " " + tt.want; err == nil || err.Error() != want {
				t.Fatalf("Load:\n got %v\nwant %s", err, want)
			}
		})
	}
}

// Issue 19: a chain dev -> staging -> production; after defaults to the
// source's soak; a promoted service has no ImagePolicy.
func TestPromoteChain(t *testing.T) {
	cfg, err := Parse([]byte(`services:
  - name: dev
    imagePolicy: apps/dev
    soak: 1m
  - name: staging
    promote: {from: dev}
    soak: 10m
  - name: production
    promote: {from: staging, after: 30m, imagePolicy: prod-api}
  - name: canary
    promote: {from: staging}
`), "chain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, from string
		after      time.Duration
		owned      string // promote.imagePolicy, resolved
	}{
		// The owned policy's default: beside the chain's root policy.
		{"staging", "dev", time.Minute, "apps/autodeploy-staging"},
		{"production", "staging", 30 * time.Minute, "flux-system/prod-api"},
		{"canary", "staging", 10 * time.Minute, "apps/autodeploy-canary"},
	} {
		s, _ := cfg.Service(tt.name)
		if s.Promote == nil || s.Promote.From != tt.from || s.Promote.After != tt.after || s.PolicyName != "" || s.PolicyNamespace != "" {
			t.Errorf("%s: promote %+v, policy %q/%q", tt.name, s.Promote, s.PolicyNamespace, s.PolicyName)
			continue
		}
		if got := s.Promote.PolicyNamespace + "/" + s.Promote.PolicyName; got != tt.owned {
			t.Errorf("%s: owned ImagePolicy %s, want %s", tt.name, got, tt.owned)
		}
		if got := s.Promote.RootPolicyNamespace + "/" + s.Promote.RootPolicyName; got != "apps/dev" {
			t.Errorf("%s: root ImagePolicy %s, want dev's apps/dev", tt.name, got)
		}
	}
	// dev's, and production's owned policy's (the others' owned
	// policies are beside dev's).
	if ns := PolicyNamespaces(cfg.Services); !slices.Equal(ns, []string{"apps", "flux-system"}) {
		t.Errorf("PolicyNamespaces = %q, want dev's and production's owned policy's", ns)
	}
}

// TestLargeFileWithoutAliases: a file past the decoder's budget with no
// alias or merge key in it (60000 services, 2 MB) was refused as "too many
// aliases or merge keys", which sent its author looking for what is not
// there (issue 18, third pass); it is "too large", with the bound.
func TestLargeFileWithoutAliases(t *testing.T) {
	var b strings.Builder
	b.WriteString("services:\n")
	for i := 0; i < 60000; i++ {
		b.WriteString("  - name: s" + strconv.Itoa(i) + "\n    namespace: n\n")
	}
	_, err := Parse([]byte(b.String()), "big.yaml")
	if err == nil || strings.Contains(err.Error(), "alias") || !strings.Contains(err.Error(), "big.yaml: document too large") {
		t.Fatalf("got %v, want big.yaml: document too large, naming no alias", err)
	}
}

// TestLoadRefusesWhatIsNotAFile: --config naming a named pipe blocked in
// open forever, SIGTERM unheard (the signal cancels a context nothing
// reading the file looks at), and /dev/zero grew to 23 GB before the OOM
// killer took it (issue 18, third pass). The config and the files it names
// for secrets are regular files of a bounded size, or refused, naming why.
func TestLoadRefusesWhatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Load(fifo); done <- err }()
	select {
	case err := <-done:
		var fe *FileError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), fifo+" is a named pipe, not a regular file") {
			t.Errorf("Load(fifo) = %v, want a FileError saying it is a named pipe", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Load of a named pipe still blocked after 5s")
	}
	if _, err := Load("/dev/zero"); err == nil || !strings.Contains(err.Error(), "/dev/zero is a device, not a regular file") {
		t.Errorf("Load(/dev/zero) = %v, want it refused as a device", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, append([]byte("services: []\n#"), bytes.Repeat([]byte("x"), MaxFileSize)...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), big+" is larger than 8 MiB") {
		t.Errorf("Load(9 MB) = %v, want it refused as too large", err)
	}
	secret := Secret{File: fifo}
	go func() { _, err := secret.Resolve(os.Getenv, ReadFile); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "named pipe") {
			t.Errorf("a secret file that is a named pipe: %v, want it refused", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a secret file that is a named pipe still blocked after 5s")
	}
}

// A Pushgateway URL with a query or fragment was pushed to the wrong path
// (".../x?tok=.../metrics/job/autodeploy": the push appends its path to the
// string; issue 18, third pass): refused, in the file and in
// pushgatewayFile, without showing the token.
func TestPushgatewayURLWithAQuery(t *testing.T) {
	for _, u := range []string{"https://gw.local/x?tok=s3cr3t", "https://gw.local/#s3cr3t", "https://gw.local/?"} {
		_, err := Parse([]byte("metrics: {pushgateway: \""+u+"\"}\nservices:\n  - name: api\n"), "u.yaml")
		if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "has a query or fragment") {
			t.Errorf("pushgateway %q: %v", u, err)
		}
		m := Metrics{PushgatewayFile: "/run/secrets/gw"}
		_, err = m.PushgatewayURL(func(string) ([]byte, error) { return []byte(u), nil })
		if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "has a query or fragment") {
			t.Errorf("pushgatewayFile holding %q: %v", u, err)
		}
	}
	if _, err := Parse([]byte("metrics: {pushgateway: \"https://ops:s3cr3t@gw.local:9091/prefix\"}\nservices:\n  - name: api\n"), "u.yaml"); err != nil {
		t.Errorf("credentials in userinfo: %v", err)
	}
}

// Schedules accepted by robfig's parser that no consumer runs as meant
// (issue 18, sixth pass), refused at their line with the reason.
func TestScheduleRefusals(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		// The API server refuses a CronJob's timeZone "Local" ("timeZone
		// must be an explicit time zone", seen on the local cluster with
		// manifests cronjob | kubectl apply --dry-run=server); windows
		// refuse it too.
		{"schedule: 'CRON_TZ=Local */2 * * * *'\n", `c.yaml:1: schedule: time zone "Local" is the zone of whichever host reads the config (a CronJob's pod is UTC, and the API server refuses it): name the zone, such as Europe/Paris or UTC`},
		{"schedule: 'TZ=Local @hourly'\n", `time zone "Local" is the zone of whichever host`},
		// The watch makes a full pass at each tick: robfig's @every 1ns
		// is a tick a second, and a CronJob (which the API server takes
		// with it) a Job a second.
		{"schedule: '@every 1ns'\n", `c.yaml:1: schedule: "@every 1ns" is shorter than 1m0s (cron's unit: the watch would make a full pass, a CronJob start a Job, more often than once a minute)`},
		{"schedule: 'TZ=UTC @every 59s'\n", `"TZ=UTC @every 59s" is shorter than 1m0s`},
		// A window opens at cron's times; @every has none (robfig counts it
		// from whenever it is asked): "@every 2h for 1h" was never open,
		// "@every 1h for 1h" always.
		{"defaults:\n  deployWindows:\n    - {cron: '@every 2h', duration: 1h}\n", `c.yaml:3: defaults.deployWindows[0].cron: "@every 2h" opens at no time of day (@every counts from whenever it is asked: the window would be never or always open): use 5 fields such as "0 9 * * 1-5", or a descriptor such as @daily`},
	} {
		_, err := Parse([]byte(tt.yaml+"services:\n  - name: api\n"), "c.yaml")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.yaml, err, tt.want)
		}
	}
	for _, ok := range []string{"@every 5m", "@every 1m", "TZ=Europe/Paris @every 2h", "@hourly", "*/2 * * * *"} {
		if _, err := Parse([]byte("schedule: '"+ok+"'\nservices:\n  - name: api\n"), "c.yaml"); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// A config path with a line break is refused before it is read: every
// error line names the file, and it faked a line of cron's mail (issue 18,
// ninth pass).
func TestLoadRefusesAControlCharacterInThePath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a\nError: fake")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte("services:\n  - name: api\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	var fe *FileError
	if !errors.As(err, &fe) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), `a\nError: fake/config.yaml" has a line break`) {
		t.Fatalf("Load(%q) = %v, want a one-line FileError naming the path quoted", path, err)
	}
}
