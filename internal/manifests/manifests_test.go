package manifests

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

var update = flag.Bool("update", false, "rewrite golden files")

func example(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load(filepath.Join("..", "..", "testdata", "config", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestGolden(t *testing.T) {
	cfg := example(t)
	leased := leaseExample(t)
	cases := map[string]func(*bytes.Buffer) error{
		"rbac.yaml": func(b *bytes.Buffer) error {
			return RBAC(b, cfg, RBACOptions{ServiceAccount: "autodeploy", Namespace: "flux-system"})
		},
		"rbac-read-only.yaml": func(b *bytes.Buffer) error {
			return RBAC(b, cfg, RBACOptions{ServiceAccount: "autodeploy", Namespace: "flux-system", ReadOnly: true})
		},
		"cronjob.yaml": func(b *bytes.Buffer) error {
			return CronJob(b, cfg, CronJobOptions{Image: "registry.local/autodeploy:v1", Namespace: "flux-system", ServiceAccount: "autodeploy",
				Getenv: fakeEnv, ReadFile: fakeFile})
		},
		"deployment.yaml": func(b *bytes.Buffer) error {
			return Deployment(b, leased, CronJobOptions{Image: "registry.local/autodeploy:v1", Namespace: "flux-system", ServiceAccount: "autodeploy",
				Getenv: fakeEnv, ReadFile: fakeFile})
		},
		"cron.txt": func(b *bytes.Buffer) error {
			return Cron(b, cfg, HostOptions{Binary: "/usr/local/bin/autodeploy", User: "root"})
		},
		"systemd.txt": func(b *bytes.Buffer) error {
			return Systemd(b, cfg, HostOptions{Binary: "/usr/local/bin/autodeploy", User: "root"})
		},
		"systemd-watch.txt": func(b *bytes.Buffer) error {
			return SystemdWatch(b, cfg, HostOptions{Binary: "/usr/local/bin/autodeploy", User: "root"})
		},
		"receiver.yaml": func(b *bytes.Buffer) error {
			return Receiver(b, cfg, receiverExample)
		},
		"receiver-setup.txt": func(b *bytes.Buffer) error {
			ReceiverSetup(b, receiverExample)
			return nil
		},
		"receiver-secret-kept.txt": func(b *bytes.Buffer) error {
			o := receiverExample
			o.Token, o.SecretExists = "", true
			if err := Receiver(b, cfg, o); err != nil {
				return err
			}
			ReceiverSetup(b, o)
			return nil
		},
	}
	for name, gen := range cases {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := gen(&b); err != nil {
				t.Fatal(err)
			}
			// The host manifests name the config by its absolute path, which
			// depends on the clone: the golden shows the usual one.
			abs, _ := filepath.Abs(cfg.Path)
			out := strings.ReplaceAll(b.String(), abs, "/etc/autodeploy/config.yaml")
			out = strings.ReplaceAll(out, cfg.Path, "testdata/config/example.yaml")
			out = strings.ReplaceAll(out, leased.Path, "testdata/config/example.yaml (lock.type: lease)")
			path := filepath.Join("..", "..", "testdata", "golden", "manifests", name+".golden")
			if *update {
				os.WriteFile(path, []byte(out), 0o644)
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test -update)", err)
			}
			if out != string(want) {
				t.Errorf("differs from %s (go test ./internal/manifests -update):\n%s", path, out)
			}
			if strings.HasSuffix(name, ".yaml") {
				// Every document is valid YAML.
				dec := yaml.NewDecoder(strings.NewReader(out))
				for {
					var v any
					if err := dec.Decode(&v); err != nil {
						if err.Error() != "EOF" {
							t.Fatalf("invalid YAML: %v", err)
						}
						break
					}
				}
			}
		})
	}
}

// The ConfigMap's config is the operator's, with the log on stdout and the
// Lease lock, and it still loads.
func TestCronJobConfigLoads(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "config", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := inClusterConfig(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(out, "configmap")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if cfg.Log.File != "-" || cfg.Lock.Type != config.LockLease || len(cfg.Services) != 3 {
		t.Errorf("log %q, lock %q, %d services", cfg.Log.File, cfg.Lock.Type, len(cfg.Services))
	}
	if !bytes.Contains(out, []byte("# Image: ghcr.io/team-mercurious/api-gateway")) {
		t.Error("comments were lost")
	}
}

func TestOnCalendar(t *testing.T) {
	for spec, want := range map[string]string{
		"*/2 * * * *": "*-*-* *:00/2:00",
		"15 * * * *":  "*-*-* *:15:00",
		"30 3 * * *":  "*-*-* 03:30:00",
		"@hourly":     "hourly",
		"@daily":      "daily",
		// cron's step runs from the field's start over its range (0-59),
		// so a step of 60 or more is minute 0 only; systemd refuses
		// *:00/90 ("Failed to parse calendar specification").
		"*/60 * * * *":  "*-*-* *:00:00",
		"*/90 * * * *":  "*-*-* *:00:00",
		"*/7 * * * *":   "*-*-* *:00/7:00",
		"*/100 * * * *": "*-*-* *:00:00",
		// cron's time zone prefix is OnCalendar's time zone suffix.
		"TZ=Europe/Berlin */2 * * * *": "*-*-* *:00/2:00 Europe/Berlin",
		"CRON_TZ=UTC @hourly":          "*-*-* *:00:00 UTC",
	} {
		if got, err := OnCalendar(spec); err != nil || got != want {
			t.Errorf("OnCalendar(%q) = %q, %v; want %q", spec, got, err, want)
		}
	}
	for _, spec := range []string{"*/5 9-17 * * 1-5", "@every 3m", "TZ=Europe/Paris */5 9-17 * * 1-5"} {
		// Refused with what does translate (it said "cannot translate"
		// alone).
		if _, err := OnCalendar(spec); err == nil || !strings.Contains(err.Error(), `only "*/N * * * *", "M * * * *", "M H * * *", @hourly and @daily translate`) {
			t.Errorf("OnCalendar(%q): %v, want refused with what translates", spec, err)
		}
	}
}

// What cron would run wrong is refused or quoted: a relative or spaced path,
// a blank user, robfig's @every (cron has none).
func TestCronLine(t *testing.T) {
	cfg := example(t)
	spaced := *cfg
	spaced.Path = "/etc/auto deploy/it's%.yaml"
	var b bytes.Buffer
	if err := Cron(&b, &spaced, HostOptions{Binary: "/opt/my tools/autodeploy", User: "deploy"}); err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(b.String()[strings.LastIndex(strings.TrimSpace(b.String()), "\n"):])
	want := `*/2 * * * * deploy '/opt/my tools/autodeploy' run --config '/etc/auto deploy/it'\''s\%.yaml'`
	if line != want {
		t.Errorf("line = %s\nwant   %s", line, want)
	}
	// The packaged line: a removed package's cron.d file stays until purge
	// and must not mail "not found" every two minutes.
	b.Reset()
	if err := Cron(&b, &spaced, HostOptions{Binary: "/opt/my tools/autodeploy", User: "deploy", IfInstalled: true}); err != nil {
		t.Fatal(err)
	}
	line = strings.TrimSpace(b.String()[strings.LastIndex(strings.TrimSpace(b.String()), "\n"):])
	want = `*/2 * * * * deploy [ -x '/opt/my tools/autodeploy' ] && '/opt/my tools/autodeploy' run --config '/etc/auto deploy/it'\''s\%.yaml'`
	if line != want {
		t.Errorf("line = %s\nwant   %s", line, want)
	}
	every := *cfg
	every.Schedule = "@every 5m"
	backslashed := *cfg
	backslashed.Path = `/etc/a\b.yaml`
	for _, tt := range []struct {
		cfg  *config.Config
		o    HostOptions
		want string
	}{
		{&every, HostOptions{Binary: "/usr/bin/autodeploy", User: "root"}, "cannot be written for cron"},
		{cfg, HostOptions{Binary: "/usr/bin/autodeploy", User: ""}, "--user must be a user name"},
		{cfg, HostOptions{Binary: "autodeploy", User: "root"}, "--binary must be an absolute path"},
		// Debian's cron turns \\ into \ in a command: sh would be handed
		// another path than the one written.
		{cfg, HostOptions{Binary: `/opt/a\b/x%y/autodeploy`, User: "root"}, "backslash"},
		{&backslashed, HostOptions{Binary: "/usr/bin/autodeploy", User: "root"}, "backslash"},
	} {
		if err := Cron(&bytes.Buffer{}, tt.cfg, tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Cron(%q, %+v) = %v, want %q", tt.cfg.Schedule, tt.o, err, tt.want)
		}
	}
}

// The example config's secrets, as this host would give them.
func fakeEnv(k string) string { return "https://secret.example/env/" + k }
func fakeFile(p string) ([]byte, error) {
	return []byte("https://secret.example/file" + p + "\n"), nil
}

// The CronJob's config holds no secret: every notification secret, inline,
// from the environment or from a file of this host, is in the Secret, and
// the config in the ConfigMap reads it from the mounted files.
func TestCronJobSecretsStaySecret(t *testing.T) {
	cfg := example(t)
	var b bytes.Buffer
	if err := CronJob(&b, cfg, CronJobOptions{Image: "r/a:v1", Namespace: "flux-system", ServiceAccount: "autodeploy", Getenv: fakeEnv, ReadFile: fakeFile}); err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(b.String(), "\n---\n")
	var secret, configMap string
	for _, d := range docs {
		switch {
		case strings.Contains(d, "kind: Secret"):
			secret = d
		case strings.Contains(d, "kind: ConfigMap"):
			configMap = d
		}
	}
	if secret == "" || configMap == "" {
		t.Fatalf("want a Secret and a ConfigMap:\n%s", b.String())
	}
	// The values: from the environment, files, and the two inline ones.
	if strings.Contains(configMap, "secret.example") || strings.Contains(configMap, "not-a-real-secret") || strings.Contains(configMap, "hooks.example.com/autodeploy") {
		t.Errorf("a secret or a host reference is in the ConfigMap:\n%s", configMap)
	}
	// The config the pod reads loads, and each secret file it names is a
	// key of the Secret.
	var body strings.Builder
	for _, l := range strings.Split(configMap[strings.Index(configMap, "config.yaml: |")+len("config.yaml: |\n"):], "\n") {
		body.WriteString(strings.TrimPrefix(l, "    ") + "\n")
	}
	pod, err := config.Parse([]byte(body.String()), "configmap")
	if err != nil {
		t.Fatalf("%v\n%s", err, body.String())
	}
	for _, n := range pod.Notify {
		for _, s := range []config.Secret{n.URL, n.HMAC} {
			if !s.Set() {
				continue
			}
			if s.Value != "" || s.Env != "" || !strings.HasPrefix(s.File, "/etc/autodeploy/secrets/") {
				t.Errorf("%s: secret source %+v, want a file of the mounted Secret", n.Name, s)
			}
			if key := strings.TrimPrefix(s.File, "/etc/autodeploy/secrets/"); !strings.Contains(secret, "  "+key+": ") {
				t.Errorf("%s: key %s is not in the Secret:\n%s", n.Name, key, secret)
			}
		}
	}
	for _, sv := range pod.Services {
		if sv.Health == nil || !sv.Health.Authorization.Set() {
			continue
		}
		a := sv.Health.Authorization
		if a.Env != "" || !strings.HasPrefix(a.File, "/etc/autodeploy/secrets/") || !strings.Contains(secret, "  "+strings.TrimPrefix(a.File, "/etc/autodeploy/secrets/")+": ") {
			t.Errorf("%s: health authorization %+v, want a file of the mounted Secret", sv.Name, a)
		}
	}
	if !strings.Contains(b.String(), "secret: {secretName: autodeploy, defaultMode: 0440}") || !strings.Contains(b.String(), "mountPath: /etc/autodeploy/secrets") {
		t.Errorf("the Secret is not mounted:\n%s", b.String())
	}
	// A secret this host cannot read is an error naming it.
	err = CronJob(&bytes.Buffer{}, cfg, CronJobOptions{Image: "r/a:v1", Namespace: "flux-system", ServiceAccount: "autodeploy",
		Getenv: func(string) string { return "" }, ReadFile: fakeFile})
	if err == nil || !strings.Contains(err.Error(), "AUTODEPLOY_SLACK_URL") {
		t.Errorf("unset variable: %v", err)
	}
}

// A health URL that carries a credential (a password, any query value) or
// comes from this host's environment or files goes to the Secret, as the
// ConfigMap's header promises; a plain one stays readable in the ConfigMap
// (issue 18, item 1).
func TestCronJobHealthURLSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	src := `lockFile: /run/lock/autodeploy.lock
services:
  - name: a
    health: {url: "https://ops:pw-S1@api.local/h"}
  - name: b
    health: {url: "https://api.local/h?private_token=S2&svc=b"}
  - name: c
    health: {url: "http://127.0.0.1:8080/healthz"}
  - name: d
    health: {urlEnv: D_HEALTH_URL}
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := CronJob(&b, cfg, CronJobOptions{Image: "r/a:v1", Namespace: "ops", ServiceAccount: "autodeploy", Getenv: fakeEnv, ReadFile: fakeFile}); err != nil {
		t.Fatal(err)
	}
	var secret, configMap string
	for _, d := range strings.Split(b.String(), "\n---\n") {
		switch {
		case strings.Contains(d, "kind: Secret"):
			secret = d
		case strings.Contains(d, "kind: ConfigMap"):
			configMap = d
		}
	}
	for _, s := range []string{"pw-S1", "S2", "secret.example"} {
		if strings.Contains(configMap, s) {
			t.Errorf("%s is in the ConfigMap:\n%s", s, configMap)
		}
		if !strings.Contains(secret, s) {
			t.Errorf("%s is not in the Secret:\n%s", s, secret)
		}
	}
	var body strings.Builder
	for _, l := range strings.Split(configMap[strings.Index(configMap, "config.yaml: |")+len("config.yaml: |\n"):], "\n") {
		body.WriteString(strings.TrimPrefix(l, "    ") + "\n")
	}
	pod, err := config.Parse([]byte(body.String()), "configmap")
	if err != nil {
		t.Fatalf("%v\n%s", err, body.String())
	}
	for _, sv := range pod.Services {
		u := sv.Health.URL
		if sv.Name == "c" {
			if u.Value != "http://127.0.0.1:8080/healthz" {
				t.Errorf("c: URL %+v, want it inline as it was", u)
			}
			continue
		}
		if u.Value != "" || u.Env != "" || !strings.HasPrefix(u.File, "/etc/autodeploy/secrets/") || !strings.Contains(secret, "  "+strings.TrimPrefix(u.File, "/etc/autodeploy/secrets/")+": ") {
			t.Errorf("%s: health URL %+v, want a file of the mounted Secret", sv.Name, u)
		}
	}
}

// No manifest copies a raw value into a comment: a line break in log.file
// (from a config built otherwise than by config.Load) or in the config's
// path would end the comment and start a line of its own, a job that
// Debian's cron runs (issue 18, review item 1). A path on a command line
// cannot be escaped there and is refused; in a comment it is escaped.
func TestManifestsCopyNoLineBreakIntoAComment(t *testing.T) {
	const inject = "\n* * * * * root touch /tmp/PWNED\n#"
	host := HostOptions{Binary: "/usr/bin/autodeploy", User: "root"}
	noInjectedLine := func(t *testing.T, out string) {
		t.Helper()
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "PWNED") && strings.HasPrefix(strings.TrimSpace(line), "*") {
				t.Fatalf("a line of its own was injected:\n%s", out)
			}
		}
	}
	t.Run("cron: log.file in the header", func(t *testing.T) {
		cfg := *example(t)
		cfg.Log.File = "/tmp/x" + inject
		var b bytes.Buffer
		if err := Cron(&b, &cfg, host); err != nil {
			t.Fatal(err)
		}
		noInjectedLine(t, b.String())
		if !strings.Contains(b.String(), `/tmp/x\n* * * * * root touch /tmp/PWNED\n#.`) {
			t.Fatalf("log.file not escaped in the header:\n%s", b.String())
		}
	})
	for name, write := range map[string]func(*bytes.Buffer, *config.Config) error{
		"cron":    func(b *bytes.Buffer, c *config.Config) error { return Cron(b, c, host) },
		"systemd": func(b *bytes.Buffer, c *config.Config) error { return Systemd(b, c, host) },
	} {
		for _, bad := range []string{"/tmp/c" + inject + ".yaml", "/tmp/c\x1b[2J.yaml", "/tmp/c\u202e.yaml"} {
			t.Run(name+": config path "+strings.ReplaceAll(bad, "\n", `\n`), func(t *testing.T) {
				cfg := *example(t)
				cfg.Path = bad
				var b bytes.Buffer
				err := write(&b, &cfg)
				if err == nil || !strings.Contains(err.Error(), "the config path") || strings.ContainsAny(err.Error(), "\n\x1b\u202e") {
					t.Fatalf("err = %q; want the config path refused, escaped", err)
				}
			})
		}
	}
	t.Run("rbac: config path in the header", func(t *testing.T) {
		cfg := *example(t)
		cfg.Path = "/tmp/c" + inject
		var b bytes.Buffer
		if err := RBAC(&b, &cfg, RBACOptions{ServiceAccount: "autodeploy", Namespace: "autodeploy"}); err != nil {
			t.Fatal(err)
		}
		noInjectedLine(t, b.String())
	})
	t.Run("cronjob: config path in the header", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "x"+inject)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := *example(t)
		raw, err := os.ReadFile(cfg.Path)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Path = filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(cfg.Path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := CronJob(&b, &cfg, CronJobOptions{Image: "x/autodeploy:1", ServiceAccount: "autodeploy", Namespace: "autodeploy", Getenv: fakeEnv, ReadFile: fakeFile}); err != nil {
			t.Fatal(err)
		}
		noInjectedLine(t, b.String())
		if !strings.Contains(b.String(), `x\n* * * * * root touch /tmp/PWNED\n#/c.yaml.`) {
			t.Fatalf("config path not escaped in the header:\n%.400s", b.String())
		}
	})
}

// A Pushgateway URL with a credential (userinfo; a query or fragment is
// refused by config, the push path would follow it) or from a file goes to
// the Secret, as health URLs do: the ConfigMap's header says it holds no
// secret (issue 18, review item 2). A plain one stays inline.
func TestCronJobPushgatewaySecret(t *testing.T) {
	for _, tt := range []struct {
		name, metrics string
		inSecret      []string // "" for a plain URL kept inline
	}{
		{"a credential", `{pushgateway: "http://pguser:PGPASS@127.0.0.1:9091/p"}`, []string{"PGPASS"}},
		{"from a file", `{pushgatewayFile: /etc/autodeploy/pg-url}`, []string{"secret.example/file/etc/autodeploy/pg-url"}},
		{"plain", `{pushgateway: "http://127.0.0.1:9091"}`, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			src := "metrics: " + tt.metrics + "\nservices:\n  - name: a\n"
			if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := CronJob(&b, cfg, CronJobOptions{Image: "r/a:v1", Namespace: "ops", ServiceAccount: "autodeploy", Getenv: fakeEnv, ReadFile: fakeFile}); err != nil {
				t.Fatal(err)
			}
			var secret, configMap string
			for _, d := range strings.Split(b.String(), "\n---\n") {
				switch {
				case strings.Contains(d, "kind: Secret"):
					secret = d
				case strings.Contains(d, "kind: ConfigMap"):
					configMap = d
				}
			}
			for _, s := range tt.inSecret {
				if strings.Contains(configMap, s) {
					t.Errorf("%s is in the ConfigMap:\n%s", s, configMap)
				}
				if !strings.Contains(secret, s) {
					t.Errorf("%s is not in the Secret:\n%s", s, secret)
				}
			}
			var body strings.Builder
			for _, l := range strings.Split(configMap[strings.Index(configMap, "config.yaml: |")+len("config.yaml: |\n"):], "\n") {
				body.WriteString(strings.TrimPrefix(l, "    ") + "\n")
			}
			pod, err := config.Parse([]byte(body.String()), "configmap")
			if err != nil {
				t.Fatalf("%v\n%s", err, body.String())
			}
			m := pod.Metrics
			if tt.inSecret == nil {
				if m.Pushgateway != "http://127.0.0.1:9091" || m.PushgatewayFile != "" {
					t.Errorf("metrics %+v, want the plain URL inline", m)
				}
				return
			}
			if m.Pushgateway != "" || m.PushgatewayFile != "/etc/autodeploy/secrets/metrics-pushgateway" || !strings.Contains(secret, "  metrics-pushgateway: ") {
				t.Errorf("metrics %+v, want a file of the mounted Secret", m)
			}
		})
	}
}

// A URL read from this host's environment or files for the CronJob's
// Secret was copied whatever it held: "notaurl" (or the bare token) went
// into the Secret, and every run in the pod then failed its health check's
// preflight or lost its notifications. It is refused as config validate
// refuses an inline one, its value never shown (issue 18, sixth pass).
func TestCronJobRefusesASecretURLThatIsNoURL(t *testing.T) {
	for _, tt := range []struct{ yaml, what string }{
		{"notify:\n  - {type: slack, urlEnv: AD_SLACK}\nservices:\n  - name: api\n", "notify[0] (slack) url"},
		{"services:\n  - name: api\n    health: {urlEnv: AD_HEALTH}\n", "services[0] (api) health url"},
		{"metrics: {pushgatewayFile: /etc/autodeploy/pg}\nservices:\n  - name: api\n", "metrics pushgateway"},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		o := CronJobOptions{Image: "r/a:v1", Namespace: "ops", ServiceAccount: "autodeploy",
			Getenv:   func(string) string { return "xoxb-SECRET-TOKEN" },
			ReadFile: func(string) ([]byte, error) { return []byte("xoxb-SECRET-TOKEN\n"), nil }}
		var b bytes.Buffer
		err = CronJob(&b, cfg, o)
		want := tt.what + ": what it holds is not an absolute http or https URL (not shown: it may be a secret); every run of the CronJob would fail with it"
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%q: %v, want an error with %q and no value", tt.yaml, err, want)
		}
		// manifests deployment's error named the CronJob, which it does
		// not write (issue 18, seventh pass).
		cfg.Lock.Type = config.LockLease
		err = Deployment(&b, cfg, o)
		want = tt.what + ": what it holds is not an absolute http or https URL (not shown: it may be a secret); every pass of the watch's Deployment would fail with it"
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "CronJob") {
			t.Errorf("deployment %q: %v, want an error with %q", tt.yaml, err, want)
		}
	}
}
