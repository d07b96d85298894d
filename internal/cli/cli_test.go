package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
	"github.com/autodeploy-dev/autodeploy/internal/version"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite golden files")

// execute runs the CLI in-process with a clean environment plus env.
func execute(t *testing.T, env map[string]string, args ...string) (ExitCode, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	f := NewFactory(IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, func(k string) string { return env[k] })
	code := Execute(context.Background(), f, args)
	return code, out.String(), errOut.String()
}

func repoPath(p string) string { return filepath.Join("..", "..", p) }

// writeConfig writes a config whose lock and log live in a temp dir.
func writeConfig(t testing.TB, extra string) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "config.yaml")
	// Quoted: a subtest's name with a comma or colon is in the temp
	// directory's, and ended the flow mapping early.
	body := "lockFile: " + strconv.Quote(filepath.Join(dir, "lock")) + "\n"
	if !strings.Contains(extra, "\nlog:") && !strings.HasPrefix(extra, "log:") {
		body += "log: {file: " + strconv.Quote(filepath.Join(dir, "autodeploy.log")) + "}\n"
	}
	body += extra
	if !strings.Contains(extra, "services:") {
		body += "services:\n  - name: api\n"
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

// unreachableKubeconfig points at a loopback port nothing listens on.
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	kc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExitCodes(t *testing.T) {
	cfg, _ := writeConfig(t, "")
	kc := unreachableKubeconfig(t)
	noToken, _ := writeConfig(t, "services:\n  - name: api\n    health: {url: 'http://x/', authorizationEnv: AUTODEPLOY_TEST_UNSET_VALIDATE_TOKEN}\n")
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		code    ExitCode
		errPart string
	}{
		{name: "version", args: []string{"version"}, code: ExitOK},
		{name: "unknown flag", args: []string{"run", "--bogus"}, code: ExitUsage, errPart: "unknown flag: --bogus"},
		{name: "unknown command", args: []string{"deploy"}, code: ExitUsage, errPart: `unknown command "deploy"`},
		{name: "extra argument", args: []string{"run", "x"}, code: ExitUsage, errPart: "takes no arguments"},
		{name: "bad color", args: []string{"version", "--color", "pink"}, code: ExitUsage, errPart: `invalid --color "pink"`},
		{name: "bad output", args: []string{"run", "--config", cfg, "-o", "yaml"}, code: ExitUsage, errPart: `invalid --output "yaml"`},
		{name: "missing config", args: []string{"run", "--config", "/nonexistent/autodeploy.yaml"}, code: ExitUsage, errPart: "/nonexistent/autodeploy.yaml"},
		{name: "config from env", args: []string{"config", "validate"}, env: map[string]string{"AUTODEPLOY_CONFIG": "/nonexistent/env.yaml"}, code: ExitUsage, errPart: "/nonexistent/env.yaml"},
		{name: "invalid config", args: []string{"config", "validate", repoPath("testdata/config/invalid/many-errors.yaml")}, code: ExitUsage, errPart: `unknown key "helth"`},
		{name: "valid example", args: []string{"config", "validate", repoPath("testdata/config/example.yaml")}, code: ExitOK},
		// The file is right, this environment lacks the health credential:
		// said, as runs would deploy nothing for the service.
		{name: "validate a missing health credential", args: []string{"config", "validate", noToken}, code: ExitOK, errPart: "warning: service api: health check http://x/: Authorization header: environment variable AUTODEPLOY_TEST_UNSET_VALIDATE_TOKEN is empty or unset"},
		{name: "unknown service", args: []string{"run", "--config", cfg, "--service", "nope"}, code: ExitUsage, errPart: `unknown service "nope"`},
		{name: "unreachable cluster", args: []string{"run", "--config", cfg, "--kubeconfig", kc}, code: ExitUnreachable, errPart: "cannot reach the Kubernetes API at https://127.0.0.1:1 (kubeconfig " + kc + ")"},
		{name: "missing kubeconfig", args: []string{"run", "--config", cfg, "--kubeconfig", "/nonexistent/kubeconfig"}, code: ExitUnreachable, errPart: "/nonexistent/kubeconfig"},
		{name: "rollback needs a service", args: []string{"rollback"}, code: ExitUsage, errPart: "takes exactly one service name"},
		// Group commands never print help with exit 0 for a mistake.
		{name: "manifests without kind", args: []string{"manifests"}, code: ExitUsage, errPart: "needs one of: cron, cronjob, deployment, promotion, rbac, receiver, systemd"},
		{name: "manifests unknown kind", args: []string{"manifests", "bogus"}, code: ExitUsage, errPart: `unknown autodeploy manifests "bogus"`},
		{name: "config unknown", args: []string{"config", "bogus"}, code: ExitUsage, errPart: `unknown autodeploy config "bogus"`},
		{name: "completion unknown shell", args: []string{"completion", "tcsh"}, code: ExitUsage, errPart: `unknown autodeploy completion "tcsh"`},
		{name: "help unknown topic", args: []string{"help", "bogus"}, code: ExitUsage, errPart: `unknown help topic "bogus"`},
		{name: "flag value not a number", args: []string{"rollback", "api", "--to-revision", "abc"}, code: ExitUsage, errPart: `invalid argument "abc" for "--to-revision" flag: not a number`},
		// Go's "time: unknown unit" named the package, not the fix, where
		// the config's durations say the syntax (issue 18, fifth pass).
		{name: "flag duration in days", args: []string{"hold", "api", "--reason", "x", "--for", "2d"}, code: ExitUsage, errPart: `invalid argument "2d" for "--for" flag: unknown unit "d" in duration "2d" (use Go syntax such as 90s, 5m, 1h; days as hours: 48h)`},
		{name: "flag duration without unit", args: []string{"forget", "api", "--lock-timeout", "5"}, code: ExitUsage, errPart: `invalid argument "5" for "--lock-timeout" flag: missing unit in duration "5" (use Go syntax`},
		{name: "flag duration out of range", args: []string{"hold", "api", "--reason", "x", "--for", "99999999999h"}, code: ExitUsage, errPart: `invalid duration "99999999999h" (out of range: the longest is 2562047h)`},
		{name: "status interval too short", args: []string{"status", "-w", "--interval", "0s"}, code: ExitUsage, errPart: "--interval must be at least 1s"},
		{name: "status negative log lines", args: []string{"status", "--log-lines", "-5"}, code: ExitUsage, errPart: "--log-lines must not be negative, got -5"},
		{name: "rbac bad service account", args: []string{"manifests", "rbac", "--config", cfg, "--service-account", "Bad_Name"}, code: ExitUsage, errPart: `--service-account "Bad_Name" is not a valid name`},
		// The read-only ServiceAccount's name is <service-account>-read-only:
		// a valid 250-character name made one of 260, which the API server
		// refuses (ServiceAccount and RoleBinding subjects; issue 18, ninth pass).
		{name: "rbac read-only account name too long", args: []string{"manifests", "rbac", "--config", cfg, "--read-only", "--service-account", strings.Repeat("a", 250)}, code: ExitUsage, errPart: `--service-account "` + strings.Repeat("a", 250) + `-read-only" is not a valid name: must be no more than 253 characters`},
		{name: "cronjob blank image", args: []string{"manifests", "cronjob", "--config", cfg, "--image", ""}, code: ExitUsage, errPart: "--image must be an image reference"},
		{name: "cron blank user", args: []string{"manifests", "cron", "--config", cfg, "--user", ""}, code: ExitUsage, errPart: "--user must be a user name"},
		// The file to check was named as the argument: the hint said to use
		// --config or AUTODEPLOY_CONFIG, which config validate ignores then
		// (issue 18, ninth pass).
		{name: "config validate a missing file", args: []string{"config", "validate", "/nonexistent/autodeploy.yaml"}, code: ExitUsage, errPart: "config file /nonexistent/autodeploy.yaml does not exist (check the file given to autodeploy config validate)"},
		{name: "config validate a directory", args: []string{"config", "validate", "/"}, code: ExitUsage, errPart: "cannot read config file: / is a directory, not a regular file (check the file given to autodeploy config validate)"},
		{name: "config validate two files", args: []string{"config", "validate", "a", "b"}, code: ExitUsage, errPart: "takes at most one file"},
		// Every command maps an unreachable cluster to 3, with one line
		// naming the server and the kubeconfig.
		{name: "rollback unreachable", args: []string{"rollback", "api", "--config", cfg, "--kubeconfig", kc}, code: ExitUnreachable, errPart: "cannot reach the Kubernetes API at https://127.0.0.1:1"},
		{name: "hold unreachable", args: []string{"hold", "api", "--reason", "x", "--config", cfg, "--kubeconfig", kc}, code: ExitUnreachable, errPart: "cannot reach the Kubernetes API at https://127.0.0.1:1"},
		{name: "resume unreachable", args: []string{"resume", "api", "--config", cfg, "--kubeconfig", kc}, code: ExitUnreachable, errPart: "cannot reach the Kubernetes API at https://127.0.0.1:1"},
		{name: "history unreachable", args: []string{"history", "api", "--config", cfg, "--kubeconfig", kc}, code: ExitUnreachable, errPart: "cannot reach the Kubernetes API at https://127.0.0.1:1"},
		{name: "status unreachable", args: []string{"status", "--config", cfg, "--kubeconfig", kc}, code: ExitUnreachable, errPart: "cannot reach the Kubernetes API at https://127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := execute(t, tt.env, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			if !strings.Contains(stderr, tt.errPart) {
				t.Fatalf("stderr %q does not contain %q", stderr, tt.errPart)
			}
			if tt.code != ExitOK && tt.code != ExitUsage && strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("error is not one line:\n%s", stderr)
			}
		})
	}
}

// Under cron a held lock is normal: exit 4 quietly, one line in the log.
// With -v the holder is named.
func TestRunLockHeld(t *testing.T) {
	cfg, dir := writeConfig(t, "")
	l, err := lock.TryAcquire(filepath.Join(dir, "lock"), "autodeploy run other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	code, stdout, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", unreachableKubeconfig(t))
	if code != ExitLocked || stdout != "" || stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 4 and silence", code, stdout, stderr)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "autodeploy.log"))
	if !strings.Contains(string(log), `msg="run skipped"`) || !strings.Contains(string(log), "autodeploy run other") {
		t.Errorf("log lacks the skipped line naming the holder:\n%s", log)
	}
	code, _, stderr = execute(t, nil, "run", "-v", "--config", cfg, "--kubeconfig", unreachableKubeconfig(t))
	if code != ExitLocked || !strings.Contains(stderr, "pid") {
		t.Fatalf("-v: exit %d, stderr %q", code, stderr)
	}
	// A program asking for JSON is told why it gets none, on stderr;
	// stdout stays empty (nothing that is not JSON).
	code, stdout, stderr = execute(t, nil, "run", "-o", "json", "--config", cfg, "--kubeconfig", unreachableKubeconfig(t))
	if code != ExitLocked || stdout != "" || !strings.Contains(stderr, "autodeploy run other") {
		t.Fatalf("-o json: exit %d, stdout %q, stderr %q; want 4 and the holder named on stderr", code, stdout, stderr)
	}
}

// No log, no deploy: the run stops before touching the cluster. The log
// cannot be opened because its lock, <log.file>.lock, is a directory (a
// path through a file, used before, is a config error since the ninth pass
// of issue 18).
func TestRunRefusesWithoutLog(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "x.log.lock"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, _ := writeConfig(t, "")
	body, _ := os.ReadFile(cfg)
	body = []byte(strings.Replace(string(body), "log: {file: ", "log: {file: "+filepath.Join(dir, "x.log")+"} #", 1))
	if err := os.WriteFile(cfg, body, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", unreachableKubeconfig(t))
	if code != ExitError || !strings.Contains(stderr, "refusing to deploy: log file "+filepath.Join(dir, "x.log")+": cannot open") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// --help is part of the interface: golden files keep it deliberate.
func TestHelpGolden(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"rollback", "--help"}, {"hold", "--help"}, {"resume", "--help"}, {"forget", "--help"}, {"status", "--help"}, {"history", "--help"}, {"doctor", "--help"}, {"manifests", "rbac", "--help"}, {"manifests", "receiver", "--help"}, {"config", "validate", "--help"}} {
		name := strings.Join(args, "_")
		t.Run(name, func(t *testing.T) {
			code, stdout, _ := execute(t, nil, args...)
			if code != ExitOK {
				t.Fatalf("exit %d", code)
			}
			golden := repoPath(filepath.Join("testdata", "golden", "cli", strings.TrimLeft(strings.ReplaceAll(name, "--", ""), "_")+".golden"))
			if *update {
				if err := os.WriteFile(golden, []byte(stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if stdout != string(want) {
				t.Errorf("help differs from %s (-update to accept):\n%s", golden, stdout)
			}
		})
	}
}

// Every knowable flag value and argument completes: service names (minus
// those given), -o values, --color, manifests kinds.
func TestCompletion(t *testing.T) {
	cfg, _ := writeConfig(t, "services:\n  - name: api\n  - name: web\n")
	for _, tt := range []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{"__complete", "--config", cfg, "rollback", ""}, []string{"api", "web"}, nil},
		{[]string{"__complete", "--config", cfg, "status", "api", ""}, []string{"web"}, []string{"api"}},
		{[]string{"__complete", "--config", cfg, "run", "--service", ""}, []string{"api", "web"}, nil},
		// --service takes comma-separated names: the part after the last
		// comma completes, the names before it stay and are not offered
		// again (issue 18, item 11).
		{[]string{"__complete", "--config", cfg, "run", "--service", "api,"}, []string{"api,web"}, []string{"api,api"}},
		{[]string{"__complete", "--config", cfg, "run", "--service", "api,w"}, []string{"api,web"}, []string{"api,api"}},
		{[]string{"__complete", "--config", cfg, "run", "--service", "web", "--service", "api,"}, nil, []string{"api,web", "api,api"}},
		{[]string{"__complete", "--config", cfg, "status", "-o", ""}, []string{"json", "wide"}, nil},
		{[]string{"__complete", "--config", cfg, "history", "api", "-o", ""}, []string{"json"}, nil},
		{[]string{"__complete", "--color", ""}, []string{"auto", "always", "never"}, nil},
		{[]string{"__complete", "manifests", ""}, []string{"rbac", "cronjob", "deployment", "cron", "systemd"}, nil},
	} {
		_, out, _ := execute(t, nil, tt.args...)
		lines := strings.Split(out, "\n")
		for _, w := range tt.want {
			if !slices.ContainsFunc(lines, func(l string) bool { return l == w || strings.HasPrefix(l, w+"\t") }) {
				t.Errorf("%v: %q not offered:\n%s", tt.args[3:], w, out)
			}
		}
		for _, n := range tt.not {
			if slices.Contains(lines, n) {
				t.Errorf("%v: %q offered again:\n%s", tt.args[3:], n, out)
			}
		}
	}
}

// An explicit empty service list is a config not filled in yet (the one
// the .deb installs, run by its cron line every two minutes): valid, and a
// run does nothing, quietly, without a cluster or a log line.
func TestNoServicesYet(t *testing.T) {
	cfg, dir := writeConfig(t, "services: []\n")
	kc := unreachableKubeconfig(t)
	code, stdout, stderr := execute(t, nil, "config", "validate", cfg)
	if code != ExitOK || !strings.Contains(stdout, "ok (0 services: runs do nothing until services are configured)") {
		t.Errorf("config validate: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, args := range [][]string{{"run"}, {"run", "--dry-run"}} {
		code, stdout, stderr = execute(t, nil, append(args, "--config", cfg, "--kubeconfig", kc)...)
		if code != ExitOK || stdout != "" || stderr != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 0 and silence", args, code, stdout, stderr)
		}
	}
	code, _, stderr = execute(t, nil, "run", "-v", "--config", cfg, "--kubeconfig", kc)
	if code != ExitOK || !strings.Contains(stderr, "no services configured in "+cfg+": nothing to do") {
		t.Errorf("run -v: exit %d, stderr %q", code, stderr)
	}
	// -o json printed nothing: a program reading the summary got no JSON
	// at all (issue 18, ninth pass). It gets a summary of no services.
	for _, args := range [][]string{{"run", "-o", "json"}, {"run", "--dry-run", "-o", "json"}} {
		code, stdout, stderr = execute(t, nil, append(args, "--config", cfg, "--kubeconfig", kc)...)
		var res deploy.Result
		if err := json.Unmarshal([]byte(stdout), &res); code != ExitOK || err != nil || res.Services == nil || len(res.Services) != 0 || res.DryRun != slices.Contains(args, "--dry-run") || stderr != "" {
			t.Errorf("%v: exit %d, stdout %q (%v), stderr %q; want 0 and a summary of no services", args, code, stdout, err, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "autodeploy.log")); !os.IsNotExist(err) {
		t.Errorf("a run without services wrote the log: %v", err)
	}
}

// manifests cronjob names the image of its own version; a development
// build has none published, so it asks for --image instead of naming one
// that does not exist.
func TestCronJobDefaultImage(t *testing.T) {
	cfg, _ := writeConfig(t, "")
	defer func(v string) { version.Version = v }(version.Version)
	version.Version = "v1.2.3"
	code, stdout, stderr := execute(t, nil, "manifests", "cronjob", "--config", cfg)
	if code != ExitOK || !strings.Contains(stdout, "image: ghcr.io/autodeploy-dev/autodeploy:v1.2.3\n") {
		t.Errorf("release build: exit %d, stderr %q, image not the release's:\n%s", code, stderr, stdout)
	}
	version.Version = "dev"
	code, _, stderr = execute(t, nil, "manifests", "cronjob", "--config", cfg)
	if code != ExitUsage || !strings.Contains(stderr, "development build (dev) has no published image: pass --image") {
		t.Errorf("dev build: exit %d, stderr %q", code, stderr)
	}
}

// manifests deployment names the image of its own version, as cronjob
// does, asks a development build for --image, and refuses a config on the
// file lock with exit 2 and the fix.
func TestDeploymentCommand(t *testing.T) {
	leased, _ := writeConfig(t, "lock: {type: lease}\n")
	filed, _ := writeConfig(t, "")
	defer func(v string) { version.Version = v }(version.Version)
	for _, tc := range []struct {
		name, version string
		args          []string
		code          ExitCode
		stdout        string
		stderr        string
	}{
		{"release", "v1.2.3", []string{"--config", leased}, ExitOK, "image: ghcr.io/autodeploy-dev/autodeploy:v1.2.3\n", ""},
		{"namespace and account", "v1.2.3", []string{"--config", leased, "-n", "ops", "--service-account", "deployer"}, ExitOK, "  namespace: ops\n", ""},
		{"development build", "dev", []string{"--config", leased}, ExitUsage, "", "development build (dev) has no published image: pass --image"},
		{"blank image", "dev", []string{"--config", leased, "--image", ""}, ExitUsage, "", "--image must be an image reference"},
		// Only blanks were refused: an image no runtime pulls was written
		// into the Deployment (issue 18, fifth pass); image.Parse's rules.
		{"uppercase image", "dev", []string{"--config", leased, "--image", "Ghcr.io/Me/Autodeploy:1"}, ExitUsage, "", `--image must be an image reference: invalid image reference "Ghcr.io/Me/Autodeploy:1": bad repository component "Me"`},
		{"bad tag", "dev", []string{"--config", leased, "--image", "ghcr.io/me/autodeploy:v1#x"}, ExitUsage, "", `bad tag "v1#x"`},
		{"digest", "dev", []string{"--config", leased, "--image", "ghcr.io/me/autodeploy@sha256:" + strings.Repeat("a", 64)}, ExitOK, "image: ghcr.io/me/autodeploy@sha256:", ""},
		{"file lock", "dev", []string{"--config", filed, "--image", "r/a:v1"}, ExitUsage, "", `has lock.type "file": the watch's replicas elect a leader on a Lease`},
	} {
		version.Version = tc.version
		code, stdout, stderr := execute(t, nil, append([]string{"manifests", "deployment"}, tc.args...)...)
		if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("%s: exit %d (want %d), stderr %q (want %q), stdout without %q:\n%s", tc.name, code, tc.code, stderr, tc.stderr, tc.stdout, stdout)
		}
		if tc.code == ExitOK && !strings.Contains(stdout, "kind: Deployment\n") {
			t.Errorf("%s: no Deployment in\n%s", tc.name, stdout)
		}
	}
}

// TestFlagPlaceholders: pflag takes the first `quoted` words of a flag's
// usage as its value's placeholder, so manifests cronjob's help read
// "--service-account manifests rbac", as if the flag took those two words
// (issue 18, third pass). Every placeholder is one word.
func TestFlagPlaceholders(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(fl *pflag.Flag) {
			if name, _ := pflag.UnquoteUsage(fl); strings.ContainsAny(name, " \t") {
				t.Errorf("%s --%s: its help shows the value as %q (backquotes in the usage)", c.CommandPath(), fl.Name, name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(NewRootCmd(NewFactory(IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}, func(string) string { return "" })))
}

// manifests systemd --watch prints the watch's service alone, with the
// --binary and --user given; without it, the timer's pair.
func TestManifestsSystemdWatch(t *testing.T) {
	cfg, _ := writeConfig(t, "")
	for _, tc := range []struct {
		args      []string
		want, not string
	}{
		{[]string{"--watch", "--binary", "/usr/bin/autodeploy", "--user", "deploy"}, "\nExecStart=/usr/bin/autodeploy watch --config ", "[Timer]"},
		{[]string{"--binary", "/usr/bin/autodeploy"}, "\nExecStart=/usr/bin/autodeploy run --config ", "autodeploy-watch.service"},
	} {
		code, stdout, stderr := execute(t, nil, append([]string{"manifests", "systemd", "--config", cfg}, tc.args...)...)
		if code != ExitOK || !strings.Contains(stdout, tc.want) || strings.Contains(stdout, tc.not) {
			t.Errorf("%v: exit %d, stderr %q, want %q and no %q in\n%s", tc.args, code, stderr, tc.want, tc.not, stdout)
		}
	}
}

// config validate of one service said "ok (1 services)" (issue 18, fifth
// pass).
func TestValidateCountsItsServices(t *testing.T) {
	cfg, _ := writeConfig(t, "")
	code, stdout, stderr := execute(t, nil, "config", "validate", cfg)
	if code != ExitOK || !strings.HasSuffix(stdout, ": ok (1 service)\n") {
		t.Errorf("config validate of one service: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// config validate warns of a notification URL or webhook secret this
// environment cannot read, or that is no URL, as it does of a health
// credential (issue 18, sixth pass: it said nothing, and runs lost every
// notification); never what the variable or file holds.
func TestValidateWarnsOfNotifyURLs(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("https://hooks.slack.com/services/T0/B0/s3cretpath\n"), 0o600)
	t.Setenv("AUTODEPLOY_TEST_VALIDATE_TOKEN", "xoxb-s3cret-token")
	t.Setenv("AUTODEPLOY_TEST_VALIDATE_HOOK", "https://hooks.example/s3cret")
	for _, tt := range []struct {
		name, notify, warning string
	}{
		{"unset variable", "{name: team, type: slack, urlEnv: AUTODEPLOY_TEST_UNSET_VALIDATE_HOOK}", "warning: notify team: URL: environment variable AUTODEPLOY_TEST_UNSET_VALIDATE_HOOK is empty or unset"},
		{"missing file", "{name: team, type: slack, urlFile: " + filepath.Join(dir, "missing") + "}", "warning: notify team: URL: read " + filepath.Join(dir, "missing")},
		{"a token and no URL", "{name: team, type: discord, urlEnv: AUTODEPLOY_TEST_VALIDATE_TOKEN}", "warning: notify team: URL from $AUTODEPLOY_TEST_VALIDATE_TOKEN: what it holds " + config.NotHTTP},
		{"unset secret", "{name: hook, type: webhook, urlEnv: AUTODEPLOY_TEST_VALIDATE_HOOK, secretEnv: AUTODEPLOY_TEST_UNSET_VALIDATE_SECRET}", "warning: notify hook: secret: environment variable AUTODEPLOY_TEST_UNSET_VALIDATE_SECRET is empty or unset"},
		{"readable file", "{name: team, type: slack, urlFile: " + good + "}", ""},
		{"readable variable", "{name: hook, type: webhook, urlEnv: AUTODEPLOY_TEST_VALIDATE_HOOK}", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := writeConfig(t, "notify:\n  - "+tt.notify+"\n")
			code, stdout, stderr := execute(t, nil, "config", "validate", cfg)
			if code != ExitOK || !strings.Contains(stdout, ": ok (1 service)") {
				t.Errorf("exit %d, stdout %q: the file is right, this environment is not", code, stdout)
			}
			if tt.warning == "" && stderr != "" || !strings.Contains(stderr, tt.warning) {
				t.Errorf("stderr %q, want %q", stderr, tt.warning)
			}
			if tt.warning != "" && !strings.Contains(stderr, "runs send it nothing until they can read it") {
				t.Errorf("stderr %q does not say what runs do", stderr)
			}
			if strings.Contains(stderr+stdout, "s3cret") {
				t.Errorf("a secret shown: %q %q", stdout, stderr)
			}
		})
	}
}

// A schedule that never fires is accepted (cron's idiom for disabled) but
// config validate warns of it (issue 18, sixth pass: "ok" and nothing
// else).
func TestValidateWarnsOfAScheduleThatNeverFires(t *testing.T) {
	for _, tt := range []struct {
		schedule string
		never    bool
	}{
		{"0 0 31 2 *", true},
		{"TZ=UTC 0 0 31 11 *", true},
		{"0 0 29 2 *", false},
		{"*/2 * * * *", false},
	} {
		t.Run(tt.schedule, func(t *testing.T) {
			cfg, _ := writeConfig(t, "schedule: '"+tt.schedule+"'\n")
			code, stdout, stderr := execute(t, nil, "config", "validate", cfg)
			if code != ExitOK || !strings.Contains(stdout, ": ok (1 service)") {
				t.Errorf("exit %d, stdout %q: the schedule is accepted", code, stdout)
			}
			warned := strings.Contains(stderr, "warning: schedule \""+tt.schedule+"\" never fires")
			if warned != tt.never || !tt.never && stderr != "" {
				t.Errorf("stderr %q; want a never-fires warning: %v", stderr, tt.never)
			}
		})
	}
}

// config validate's warnings quote the config's variable names: a control
// character there reached the terminal raw (doctor escapes it; issue 18,
// seventh pass, the terminal of item 9).
func TestValidateWarningsAreEscaped(t *testing.T) {
	cfg, _ := writeConfig(t, "notify:\n  - {type: slack, urlEnv: \"A\\u001b[31mX\"}\nservices:\n  - name: api\n    health: {urlEnv: \"B\\u001b[32mY\"}\n")
	code, _, stderr := execute(t, nil, "config", "validate", cfg)
	if code != ExitOK || strings.Contains(stderr, "\x1b") || !strings.Contains(stderr, `A\x1b[31mX`) || !strings.Contains(stderr, `B\x1b[32mY`) {
		t.Errorf("exit %d, stderr %q: want both warnings, escaped", code, stderr)
	}
}

// writeConfig's paths are quoted: a subtest's name is in its temp
// directory's, and a comma or brace there ended the flow mapping early.
func TestWriteConfigQuotesPaths(t *testing.T) {
	t.Run("a, {b}", func(t *testing.T) {
		cfg, _ := writeConfig(t, "")
		if code, _, stderr := execute(t, nil, "config", "validate", "--config", cfg); code != ExitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})
}
