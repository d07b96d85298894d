package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
	"text/template"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Load reads and validates the configuration file at path. A file that cannot
// be read yields a *FileError, an invalid one a *ValidationError; messages
// name the file as path is spelled here. Beyond Parse's checks, Load checks
// the paths the file names against this machine: log.file must be a
// regular file, a symlink to one, or not there yet (LogFileProblem).
func Load(path string) (*Config, error) {
	if HasControl(path) {
		// Every error line, log line and generated cron line names the
		// file: a line break in it faked a line of cron's mail ("Error:
		// ..."; issue 18, ninth pass).
		return nil, &FileError{Path: path, Err: fmt.Errorf("its path %s has a line break or another control character, which no error line, log line or cron line can show as it is; rename the file or its directory", strconv.Quote(path))}
	}
	data, err := ReadFile(path)
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	return parse(data, path, true)
}

// Parse validates a configuration held in memory, without looking at the
// file system. name stands for the file in error messages. Any error is a
// *ValidationError listing every problem.
func Parse(data []byte, name string) (*Config, error) {
	return parse(data, name, false)
}

// parse is Parse, checking paths against this machine when onMachine.
func parse(data []byte, name string, onMachine bool) (*Config, error) {
	raw, d := decodeRaw(data)
	d.onMachine = onMachine
	var cfg *Config
	if d.budget > 0 {
		cfg = d.resolve(raw, name)
	}
	if len(d.problems) > 0 {
		return nil, &ValidationError{File: name, Problems: sortProblems(d.problems)}
	}
	return cfg, nil
}

// decodeRaw parses the YAML and decodes it into the raw structs, recording
// syntax and type problems in the returned decoder.
func decodeRaw(data []byte) (*rawConfig, *decoder) {
	d := newDecoder()
	raw := &rawConfig{}
	root, err := parseYAML(data)
	if err != nil {
		d.add(syntaxProblem(err, data))
		return raw, d
	}
	if !isNull(root) {
		d.mapping(root, reflect.ValueOf(raw).Elem(), "")
	}
	return raw, d
}

// parseYAML returns the root node of the single document in data, or nil for
// an empty file.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	defer func() {
		// The YAML library has panicked on malformed input in the past;
		// a config file must never crash the tool.
		if r := recover(); r != nil {
			root, err = nil, fmt.Errorf("yaml: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, err
	case len(next.Content) > 0 && !isNull(next.Content[0]):
		// A second document would be ignored, and whatever the user
		// put there with it.
		return nil, fmt.Errorf("yaml: line %d: a second YAML document is not allowed (remove the \"---\")", next.Line)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlAnchorRE is an error the YAML library gives without a line.
var yamlAnchorRE = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)

func syntaxProblem(err error, data []byte) (int, string, string) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, "", "invalid YAML: " + m[2]
	}
	if m := yamlAnchorRE.FindStringSubmatch(msg); m != nil {
		// Said with no line (issue 18, sixth pass): the first alias of
		// that name is where to look.
		return aliasLine(data, m[1]), "", fmt.Sprintf("invalid YAML: unknown anchor '%s' referenced (define it with &%s before its first use, or fix the name)", m[1], m[1])
	}
	return 0, "", "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")
}

// aliasLine is the line of the first alias *name in data, 0 if none.
func aliasLine(data []byte, name string) int {
	for i, line := range strings.Split(string(data), "\n") {
		for rest := line; ; {
			at := strings.Index(rest, "*"+name)
			if at < 0 {
				break
			}
			rest = rest[at+1+len(name):]
			if rest == "" || strings.ContainsAny(rest[:1], " \t\r,]}#") {
				return i + 1
			}
		}
	}
	return 0
}

func sortProblems(ps []Problem) []Problem {
	// An alias used several times can yield the same problem repeatedly.
	seen := map[Problem]bool{}
	out := ps[:0]
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

// resolve applies defaults and checks values; problems go to d.
// APIVersion and Kind name the config format. Both are optional (absent
// means this version), so that a later format can be recognised and
// migrated, and a file written for another tool or version is refused.
const (
	APIVersion = "autodeploy.dev/v1alpha1"
	Kind       = "Config"
)

func (d *decoder) resolve(r *rawConfig, name string) *Config {
	if r.APIVersion.ok() && r.APIVersion.Val != APIVersion {
		d.add(r.APIVersion.Line, r.APIVersion.Path, fmt.Sprintf("unknown apiVersion %s: this autodeploy reads %s (upgrade autodeploy, or fix the file)", quote(r.APIVersion.Val), APIVersion))
	}
	if r.Kind.ok() && r.Kind.Val != Kind {
		d.add(r.Kind.Line, r.Kind.Path, fmt.Sprintf("unknown kind %s: an autodeploy config is kind %s", quote(r.Kind.Val), Kind))
	}
	c := &Config{
		Path:       name,
		Schedule:   r.Schedule.or(DefaultSchedule),
		LockFile:   r.LockFile.or(DefaultLockFile),
		RunTimeout: r.RunTimeout.or(DefaultRunTimeout),
		Log: Log{
			File:       r.Log.File.or(DefaultLogFile),
			MaxSizeMB:  r.Log.MaxSizeMB.or(DefaultLogMaxSizeMB),
			MaxBackups: r.Log.MaxBackups.or(DefaultLogMaxBackups),
			MaxAgeDays: r.Log.MaxAgeDays.or(DefaultLogMaxAgeDays),
			Compress:   r.Log.Compress.or(DefaultLogCompress),
		},
		Flux: Flux{
			Namespace:        r.Flux.Namespace.or(DefaultFluxNamespace),
			ReconcileTimeout: r.Flux.ReconcileTimeout.or(DefaultFluxReconcileTimeout),
		},
		Defaults: Defaults{
			Namespace:      r.Defaults.Namespace.or(DefaultNamespace),
			RolloutTimeout: r.Defaults.RolloutTimeout.or(DefaultRolloutTimeout),
			Soak:           r.Defaults.Soak.or(0),
			AutoRollback:   r.Defaults.AutoRollback.or(DefaultAutoRollback),
		},
	}

	sched, err := parseSchedule(c.Schedule)
	switch zone, _ := CutTimeZone(c.Schedule); {
	case err != nil && r.Schedule.ok():
		d.add(r.Schedule.Line, r.Schedule.Path, fmt.Sprintf("invalid cron schedule %s: %v", quote(c.Schedule), err))
	case zone == "Local":
		// As for a window's timeZone; and manifests cronjob's
		// timeZone: Local is refused by the API server ("timeZone must
		// be an explicit time zone", seen on 1.37).
		d.add(r.Schedule.Line, r.Schedule.Path, `time zone "Local" is the zone of whichever host reads the config (a CronJob's pod is UTC, and the API server refuses it): name the zone, such as Europe/Paris or UTC`)
	case everyDelay(sched) > 0 && everyDelay(sched) < time.Minute:
		// robfig rounds @every up to a second only: the watch would
		// make a full pass every second, and a CronJob (the API server
		// takes @every) is read by the same parser.
		d.add(r.Schedule.Line, r.Schedule.Path, fmt.Sprintf("%s is shorter than %s (cron's unit: the watch would make a full pass, a CronJob start a Job, more often than once a minute)", quote(c.Schedule), time.Minute))
	}
	c.schedule = sched
	d.absPath(r.LockFile)
	c.Lock = Lock{
		Type:           r.Lock.Type.or(LockFile),
		LeaseNamespace: r.Lock.LeaseNamespace.or(c.Flux.Namespace),
		LeaseName:      r.Lock.LeaseName.or(DefaultLeaseName),
		LeaseDuration:  r.Lock.LeaseDuration.or(DefaultLeaseDuration),
	}
	if r.Lock.Type.ok() && c.Lock.Type != LockFile && c.Lock.Type != LockLease {
		d.add(r.Lock.Type.Line, r.Lock.Type.Path, fmt.Sprintf("unknown lock type %s (use file or lease)", quote(c.Lock.Type)))
	}
	d.name(r.Lock.LeaseNamespace, isLabel, "namespace", labelRule)
	d.name(r.Lock.LeaseName, isSubdomain, "Lease name", subdomainRule)
	// A Lease counts whole seconds (leaseDurationSeconds), and a holder
	// renews every third of it: below a few seconds, an API server's
	// ordinary latency would lose the lock.
	d.durationAtLeast(r.Lock.LeaseDuration, 5*time.Second, "")
	d.positive(r.RunTimeout)

	if r.Log.File.Val != LogToStdout {
		d.absPath(r.Log.File)
	}
	d.logFile(c, r)
	d.atLeast(r.Log.MaxSizeMB, 1)
	d.atMost(r.Log.MaxSizeMB, 100000) // 100 GB; far larger values overflowed the size in bytes
	d.atLeast(r.Log.MaxBackups, 0)
	d.atMost(r.Log.MaxBackups, 10000)
	d.atLeast(r.Log.MaxAgeDays, 0)
	d.atMost(r.Log.MaxAgeDays, 36500)

	d.name(r.Flux.Namespace, isLabel, "namespace", labelRule)
	d.durationAtLeast(r.Flux.ReconcileTimeout, minReconcileTimeout, whyMinReconcileTimeout)

	d.name(r.Defaults.Namespace, isLabel, "namespace", labelRule)
	d.durationAtLeast(r.Defaults.RolloutTimeout, minRolloutTimeout, whyMinRolloutTimeout)
	d.soak(r.Defaults.Soak)
	c.Defaults.DeployWindows = d.windows(r.Defaults.DeployWindows, "defaults.deployWindows", c.Defaults.RolloutTimeout+c.Defaults.Soak, "defaults")

	if len(r.Services) == 0 {
		// An explicit "services: []" is a config not filled in yet (the
		// one the .deb installs, whose cron line must do nothing until
		// then); a file without the list is more likely truncated or
		// mistyped than meant.
		if _, seen := d.seqLines["services"]; !seen && (r.Line > 0 || len(d.problems) == 0) {
			// Either a mapping without services or an empty file; a
			// file that did not parse has said enough already.
			d.add(r.Line, "", "no services configured (add them under services:, or write services: [] to run nothing yet)")
		}
	}
	for i, rn := range r.Notify {
		if rn.Line != 0 {
			c.Notify = append(c.Notify, d.notify(rn, fmt.Sprintf("notify[%d]", i)))
		}
	}
	c.Metrics = d.metrics(r.Metrics)

	names := map[string]int{}
	targets := map[string]Service{}
	for i, rs := range r.Services {
		if rs.Line == 0 {
			continue // not a mapping, already reported
		}
		s := d.service(c, rs, fmt.Sprintf("services[%d]", i))
		if rs.Name.ok() && s.Name != "" {
			if first, dup := names[s.Name]; dup {
				d.add(rs.Name.Line, rs.Name.Path, fmt.Sprintf("duplicate service name %s (first defined at line %d)", quote(s.Name), first))
			} else {
				names[s.Name] = rs.Name.Line
			}
		}
		// Two services updating the same container would undo each
		// other's work on every run.
		target := s.Namespace + "/" + s.Deployment + "/" + s.Container
		if other, dup := targets[target]; dup && s.Deployment != "" && s.Name != other.Name {
			d.add(rs.Line, fmt.Sprintf("services[%d]", i), fmt.Sprintf("deployment %s/%s is already managed by service %s (line %d)",
				s.Namespace, s.Deployment, quote(other.Name), other.Line))
		} else if !dup {
			targets[target] = s
		}
		c.Services = append(c.Services, s)
	}
	d.promotions(c, r.Services)
	return c
}

func (d *decoder) service(c *Config, rs rawService, path string) Service {
	s := Service{
		Name:           rs.Name.or(""),
		Namespace:      rs.Namespace.or(c.Defaults.Namespace),
		Container:      rs.Container.or(""),
		RolloutTimeout: rs.RolloutTimeout.or(c.Defaults.RolloutTimeout),
		Soak:           rs.Soak.or(c.Defaults.Soak),
		AutoRollback:   rs.AutoRollback.or(c.Defaults.AutoRollback),
		Line:           rs.Line,
	}
	s.Deployment = rs.Deployment.or(s.Name)
	s.DeployWindows = c.Defaults.DeployWindows
	if _, own := d.seqLines[path+".deployWindows"]; own {
		// An explicit "deployWindows: []" opts a service out of the
		// defaults' windows.
		s.DeployWindows = d.windows(rs.DeployWindows, path+".deployWindows", s.RolloutTimeout+s.Soak, quote(s.Name))
	}

	if !rs.Name.Set {
		d.add(rs.Line, path, `missing required key "name"`)
	}
	d.name(rs.Name, isLabel, "service name", labelRule)
	d.name(rs.Namespace, isLabel, "namespace", labelRule)
	d.name(rs.Deployment, isSubdomain, "Deployment name", subdomainRule)
	if rs.Container.ok() && rs.Container.Val != "" {
		d.name(rs.Container, isLabel, "container name", labelRule)
	}
	d.durationAtLeast(rs.RolloutTimeout, minRolloutTimeout, whyMinRolloutTimeout)
	d.soak(rs.Soak)
	// A rollout longer than the run's budget could never be judged: every
	// run would leave it unverified, and a broken one would stay in place.
	if c.RunTimeout > 0 && !rs.RolloutTimeout.Bad && s.RolloutTimeout > c.RunTimeout && s.RolloutTimeout <= maxDuration {
		line, at := rs.Line, path
		switch {
		case rs.RolloutTimeout.ok():
			line, at = rs.RolloutTimeout.Line, rs.RolloutTimeout.Path
		}
		d.add(line, at, fmt.Sprintf("rolloutTimeout %s is longer than runTimeout %s: the run's budget would end every rollout of %s before it could be judged (raise runTimeout or lower rolloutTimeout)", s.RolloutTimeout, c.RunTimeout, quote(s.Name)))
	}

	s.PolicyNamespace, s.PolicyName = c.Flux.Namespace, s.Name
	if p := rs.Promote; p != nil && p.Line != 0 {
		s.PolicyNamespace, s.PolicyName = "", ""
		s.Promote = &Promote{From: p.From.or("")}
		if !p.From.Set {
			d.add(p.Line, path+".promote", `missing required key "from" (the service whose verified image this one takes)`)
		}
		d.nonNegative(p.After)
		if p.After.ok() {
			s.Promote.After = p.After.Val
		} else {
			s.Promote.After = -1 // the source's soak, once known (promotions)
		}
		if rs.ImagePolicy.Set {
			d.add(rs.ImagePolicy.Line, rs.ImagePolicy.Path, "set one of imagePolicy and promote, not both: a promoted service takes its image from promote.from")
		}
		if p.ImagePolicy.ok() {
			// Its namespace defaults to flux.namespace like a service's
			// imagePolicy; without the key, the chain's root policy's
			// namespace (promotions).
			ns, name, err := parseImagePolicy(p.ImagePolicy.Val, c.Flux.Namespace)
			if err != nil {
				d.add(p.ImagePolicy.Line, p.ImagePolicy.Path, err.Error())
			}
			s.Promote.PolicyNamespace, s.Promote.PolicyName = ns, name
		}
	} else if rs.ImagePolicy.ok() {
		ns, name, err := parseImagePolicy(rs.ImagePolicy.Val, c.Flux.Namespace)
		if err != nil {
			d.add(rs.ImagePolicy.Line, rs.ImagePolicy.Path, err.Error())
		}
		s.PolicyNamespace, s.PolicyName = ns, name
	}

	if rs.Health != nil {
		s.Health = d.health(rs.Health, path+".health")
	}
	return s
}

func (d *decoder) health(rh *rawHealth, path string) *Health {
	h := &Health{
		URL:           Secret{Value: rh.URL.or(""), Env: rh.URLEnv.or(""), File: rh.URLFile.or("")},
		ExpectStatus:  rh.ExpectStatus.or(DefaultHealthExpectStatus),
		ExpectBody:    rh.ExpectBody.or(""),
		Timeout:       rh.Timeout.or(DefaultHealthTimeout),
		Interval:      rh.Interval.or(DefaultHealthInterval),
		Authorization: Secret{Env: rh.AuthorizationEnv.or(""), File: rh.AuthorizationFile.or("")},
	}
	if rh.AuthorizationEnv.ok() && rh.AuthorizationFile.ok() {
		d.add(rh.AuthorizationFile.Line, rh.AuthorizationFile.Path, "set one of authorizationEnv and authorizationFile, not both")
	}
	d.absPath(rh.AuthorizationFile)
	d.absPath(rh.URLFile)
	sources := 0
	for _, o := range []opt[string]{rh.URL, rh.URLEnv, rh.URLFile} {
		if o.Set {
			sources++
		}
	}
	switch {
	case sources == 0:
		d.add(rh.Line, path, `missing required key "url" (or urlEnv, urlFile)`)
	case sources > 1:
		d.add(rh.Line, path, fmt.Sprintf("give exactly one of url, urlEnv or urlFile (got %d)", sources))
	case rh.URL.ok():
		if !IsHTTPURL(h.URL.Value) {
			d.add(rh.URL.Line, rh.URL.Path, fmt.Sprintf("must be an absolute http or https URL, got %s", quote(RedactURL(h.URL.Value))))
		}
	}
	if rh.ExpectStatus.ok() && (h.ExpectStatus < 100 || h.ExpectStatus > 599) {
		d.add(rh.ExpectStatus.Line, rh.ExpectStatus.Path, fmt.Sprintf("must be an HTTP status code (100-599), got %d", h.ExpectStatus))
	}
	if rh.ExpectBody.ok() {
		if err := checkBodyTemplate(h.ExpectBody); err != nil {
			d.add(rh.ExpectBody.Line, rh.ExpectBody.Path, err.Error())
		}
	}
	d.durationAtLeast(rh.Timeout, minHTTPTimeout, whyMinHTTPTimeout)
	d.durationAtLeast(rh.Interval, minHealthInterval, whyMinHealthInterval)
	return h
}

// checkBodyTemplate parses the template and runs it once, because a
// misspelled field such as {{.Tagg}} only fails at execution, which would
// otherwise first happen in the middle of a deployment.
func checkBodyTemplate(body string) error {
	t, err := template.New("expectBody").Option("missingkey=error").Parse(body)
	if err == nil {
		err = t.Execute(&limitWriter{n: 1 << 20}, bodyFields("registry.example/app:v1.2.3", "v1.2.3"))
	}
	if err == nil {
		return nil
	}
	msg := strings.TrimPrefix(err.Error(), "template: expectBody:")
	msg = strings.Replace(msg, `executing "expectBody" at `, "at ", 1)
	return fmt.Errorf("invalid template %s: %s (available fields: {{.Tag}}, {{.Image}})", quote(body), msg)
}

// limitWriter discards output but stops a template that renders without end.
type limitWriter struct{ n int }

func (w *limitWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		return 0, errors.New("renders more than 1 MiB")
	}
	w.n -= len(p)
	return len(p), nil
}

// parseImagePolicy splits "name" or "namespace/name"; a bare name lives in
// the Flux namespace, where `flux create image policy` puts it by default.
func parseImagePolicy(s, fluxNamespace string) (namespace, name string, err error) {
	parts := strings.Split(s, "/")
	switch len(parts) {
	case 1:
		namespace, name = fluxNamespace, parts[0]
	case 2:
		namespace, name = parts[0], parts[1]
	default:
		return "", "", fmt.Errorf(`invalid value %s (want "name" or "namespace/name")`, quote(s))
	}
	if !isLabel(namespace) {
		return "", "", fmt.Errorf("invalid value %s: %s is not a valid namespace (%s)", quote(s), quote(namespace), labelRule)
	}
	if !isSubdomain(name) {
		return "", "", fmt.Errorf("invalid value %s: %s is not a valid ImagePolicy name (%s)", quote(s), quote(name), subdomainRule)
	}
	return namespace, name, nil
}

const (
	labelRule     = "must be a DNS-1123 label: at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit"
	subdomainRule = "must be a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit"
)

var (
	labelRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	subdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// CheckServiceName refuses a name no config can give a service (what
// services[].name is checked against): forget, which acts on names no
// longer configured, takes only names that could have been.
func CheckServiceName(name string) error {
	if !isLabel(name) {
		return fmt.Errorf("%s is not a valid service name (%s)", quote(name), labelRule)
	}
	return nil
}

// isLabel matches Kubernetes' rule for namespace and container names.
func isLabel(s string) bool { return len(s) <= 63 && labelRE.MatchString(s) }

// isSubdomain matches Kubernetes' rule for most object names, Deployments
// and ImagePolicies included.
func isSubdomain(s string) bool { return len(s) <= 253 && subdomainRE.MatchString(s) }

func (d *decoder) name(o opt[string], valid func(string) bool, what, rule string) {
	if o.ok() && !valid(o.Val) {
		d.add(o.Line, o.Path, fmt.Sprintf("%s is not a valid %s (%s)", quote(o.Val), what, rule))
	}
}

// maxDuration bounds every duration of the config: a day is longer than
// any rollout or run should take, and far from the overflow of the sums
// built on them (RunDeadline, the backstops in seconds).
const maxDuration = 24 * time.Hour

func (d *decoder) positive(o opt[time.Duration]) {
	d.durationAtLeast(o, 0, "")
}

// The shortest durations that mean what they say (issue 18, sixth pass:
// soak: 1ns, rolloutTimeout: 1ns, reconcileTimeout: 1ns, a health check's
// and a notification's timeout and interval of 1ns were accepted).
const (
	// A soak is looked at once a second (deploy's soakPoll), against
	// evidence Kubernetes dates to the second (a container's finishedAt,
	// a condition's lastTransitionTime): a shorter one ends unwatched.
	minSoak    = time.Second
	whyMinSoak = "a soak is looked at once a second, against pod evidence dated to the second: a shorter one ends before anything is watched"
	// The rollout is judged from the Deployment's status, which the
	// controller writes in its own time after the patch: a budget under a
	// second would time out, and roll back, every rollout.
	minRolloutTimeout    = time.Second
	whyMinRolloutTimeout = "the rollout is judged from the status the Deployment controller writes after the patch: a shorter budget times out, and rolls back, every rollout"
	// Flux's rescan is a request to image-reflector-controller and a scan
	// of the registry: under a second every run would say Flux stopped
	// answering.
	minReconcileTimeout    = time.Second
	whyMinReconcileTimeout = "the rescan is a request to Flux and a scan of the registry: a shorter wait says Flux stopped answering on every run"
	// Cron, which opens a window, counts in minutes, and runs start on
	// a minute: a shorter window is open less than cron's own unit.
	minWindowDuration    = time.Minute
	whyMinWindowDuration = "cron opens a window on a minute, and runs start on a minute: a shorter window is less than cron's unit"
	// A health check's or notification's whole budget: an HTTP request
	// to another host takes milliseconds at best, so a timeout of 1ns
	// failed every check (a rollback each) or every notification.
	minHTTPTimeout    = 100 * time.Millisecond
	whyMinHTTPTimeout = "an HTTP request to another host needs more: every one would fail"
	// The pause between health attempts: at 1ns a service answering 503
	// at once was asked thousands of times a second for the whole
	// timeout. Ten a second at most.
	minHealthInterval    = 100 * time.Millisecond
	whyMinHealthInterval = "a service answering at once would be asked more than ten times a second"
)

// soak checks a soak: 0 (none) or from minSoak to a day.
func (d *decoder) soak(o opt[time.Duration]) {
	if o.ok() && o.Val > 0 && o.Val < minSoak {
		d.add(o.Line, o.Path, fmt.Sprintf("must be 0s (no soak) or at least %s (%s), got %s", minSoak, whyMinSoak, o.Val))
		return
	}
	d.nonNegative(o)
}

// promotions checks each promote.from (an existing service, no cycle) and
// resolves a default after (the source's soak).
func (d *decoder) promotions(c *Config, raw []rawService) {
	byName := map[string]int{}
	for i, s := range c.Services {
		byName[s.Name] = i
	}
	line := func(s Service) (int, string) {
		for i, rs := range raw {
			if rs.Line == s.Line && rs.Promote != nil {
				if rs.Promote.From.ok() {
					return rs.Promote.From.Line, rs.Promote.From.Path
				}
				return rs.Promote.Line, fmt.Sprintf("services[%d].promote", i)
			}
		}
		return s.Line, ""
	}
	for i := range c.Services {
		s := &c.Services[i]
		if s.Promote == nil || s.Promote.From == "" {
			continue
		}
		src, ok := byName[s.Promote.From]
		if !ok {
			l, at := line(*s)
			d.add(l, at, fmt.Sprintf("unknown service %s in promote.from of %s", quote(s.Promote.From), quote(s.Name)))
			continue
		}
		if s.Promote.After < 0 {
			s.Promote.After = c.Services[src].Soak
		}
		// Follow the chain: a service met twice is a cycle.
		seen := []string{s.Name}
		for cur := &c.Services[src]; ; {
			if slices.Contains(seen, cur.Name) {
				l, at := line(*s)
				d.add(l, at, fmt.Sprintf("promotion cycle: %s -> %s (a chain must start at a service with an imagePolicy)", strings.Join(seen, " -> "), cur.Name))
				break
			}
			seen = append(seen, cur.Name)
			if cur.Promote == nil {
				// The chain's root: the owned policy lives beside its
				// policy, in the namespace the automation lists.
				s.Promote.RootPolicyNamespace, s.Promote.RootPolicyName = cur.PolicyNamespace, cur.PolicyName
				if s.Promote.PolicyName == "" {
					s.Promote.PolicyNamespace, s.Promote.PolicyName = cur.PolicyNamespace, OwnedPolicyPrefix+s.Name
				}
				break
			}
			next, ok := byName[cur.Promote.From]
			if !ok {
				break // reported at its own line
			}
			cur = &c.Services[next]
		}
	}
}

// nonNegative checks 0 <= o <= a day.
func (d *decoder) nonNegative(o opt[time.Duration]) {
	switch {
	case !o.ok():
	case o.Val < 0:
		d.add(o.Line, o.Path, fmt.Sprintf("must not be negative, got %s", o.Val))
	case o.Val > maxDuration:
		d.add(o.Line, o.Path, fmt.Sprintf("must be at most %s, got %s", maxDuration, o.Val))
	}
}

// durationAtLeast checks min <= o (min 0: greater than zero) and o <= a
// day; why, if any, says why nothing shorter makes sense.
func (d *decoder) durationAtLeast(o opt[time.Duration], min time.Duration, why string) {
	switch {
	case !o.ok():
	case o.Val <= 0:
		d.add(o.Line, o.Path, fmt.Sprintf("must be greater than zero, got %s", o.Val))
	case min > 0 && o.Val < min && why != "":
		d.add(o.Line, o.Path, fmt.Sprintf("must be at least %s (%s), got %s", min, why, o.Val))
	case min > 0 && o.Val < min:
		d.add(o.Line, o.Path, fmt.Sprintf("must be at least %s, got %s", min, o.Val))
	case o.Val > maxDuration:
		d.add(o.Line, o.Path, fmt.Sprintf("must be at most %s, got %s", maxDuration, o.Val))
	}
}

// atMost checks an int's upper bound.
func (d *decoder) atMost(o opt[int], max int) {
	if o.ok() && o.Val > max {
		d.add(o.Line, o.Path, fmt.Sprintf("must be at most %d, got %d", max, o.Val))
	}
}

func (d *decoder) atLeast(o opt[int], min int) {
	if !o.ok() || o.Val >= min {
		return
	}
	if min == 0 {
		d.add(o.Line, o.Path, fmt.Sprintf("must not be negative, got %d", o.Val))
	} else {
		d.add(o.Line, o.Path, fmt.Sprintf("must be at least %d, got %d", min, o.Val))
	}
}

// logLockSuffix must match runlog's: writers of the log flock
// <log.file>.lock around each line.
const logLockSuffix = ".lock"

// logFile checks log.file against the machine (with d.stat) and against
// lockFile.
func (d *decoder) logFile(c *Config, r *rawConfig) {
	file := c.Log.File
	if file == LogToStdout || r.Log.File.Bad || !filepath.IsAbs(file) {
		return
	}
	if d.onMachine {
		if why := LogFileProblem(file); why != "" {
			d.add(r.Log.File.Line, "log.file", strconv.Quote(file)+" "+why)
		}
	}
	// The runs' file lock is held for the whole run: the log's own lock,
	// taken around each line, would make a run wait for itself at its
	// first line, and the log itself would be truncated to the holder's
	// record.
	if c.Lock.Type != LockFile {
		return
	}
	var why string
	switch c.LockFile {
	case file:
		why = "is also log.file (taking the lock would overwrite the log)"
	case file + logLockSuffix:
		why = "is the lock log.file takes around each line (a run would wait for itself)"
	default:
		return
	}
	if r.LockFile.ok() {
		d.add(r.LockFile.Line, r.LockFile.Path, fmt.Sprintf("%s %s; use another path, such as the default %s", quote(c.LockFile), why, quote(DefaultLockFile)))
	} else {
		d.add(r.Log.File.Line, "log.file", fmt.Sprintf("the default lockFile %s %s; set lockFile or use another log.file", quote(c.LockFile), why))
	}
}

// absPath rejects relative paths: cron starts the tool in the home directory,
// which is rarely what a relative path was written against.
// A path with a line break or another control character is refused too:
// the manifests copy paths into cron lines, units and comments, where a
// line break starts a line of its own (in /etc/cron.d, a job run as
// root), and a terminal shows them (issue 18, review item 1).
func (d *decoder) absPath(o opt[string]) {
	if !o.ok() {
		return
	}
	if HasControl(o.Val) {
		d.add(o.Line, o.Path, "must not hold a line break or another control character (cron, systemd and the manifests' comments cannot hold one), got "+strconv.Quote(o.Val))
		return
	}
	if !filepath.IsAbs(o.Val) {
		d.add(o.Line, o.Path, fmt.Sprintf("must be an absolute path, got %s", quote(o.Val)))
	}
}

// HasControl says whether s holds what strconv.Quote would escape: a
// control character (line breaks, ESC, DEL, C1), a line or paragraph
// separator, a bidi override or another invisible format character, or
// invalid UTF-8.
func HasControl(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || (r != ' ' && !strconv.IsPrint(r)) {
			return true
		}
	}
	return false
}

// LogFileProblem says why what is at path cannot be the log file, or ""
// when it can: nothing yet (it is created), a regular file, or a symlink
// to one (rotation renames the file it points to and keeps the link). The
// reason reads after the path: `"/x" is a directory (...)`. config.Load
// and runlog.Open both ask, the second because the file may have changed
// since.
func LogFileProblem(path string) string {
	if strings.HasSuffix(path, "/") && path != "/" {
		// Opened, it is refused as a directory (EISDIR) or not one
		// (ENOTDIR), whatever is there.
		return fmt.Sprintf("ends in a slash, which names a directory (name a file, such as %s)", strconv.Quote(strings.TrimRight(path, "/")))
	}
	st, err := os.Lstat(path)
	if errors.Is(err, syscall.ENOTDIR) {
		if file := ThroughAFile(path); file != "" {
			// The run said "free space on its file system or fix its
			// permissions" of it (issue 18, ninth pass).
			return fmt.Sprintf("goes through %s, which is a file, not a directory (name a path in a directory)", strconv.Quote(file))
		}
	}
	if err != nil {
		return "" // nothing there (created), or the open says what is wrong
	}
	if st.Mode()&fs.ModeSymlink == 0 {
		return notALog(path, st.Mode())
	}
	dest, _ := os.Readlink(path)
	st, err = os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		// Not followed to create the file: a link to nothing is more
		// likely a log moved away or a volume not mounted than a wish,
		// and the file created would be on the wrong file system.
		return fmt.Sprintf("is a symlink to %s, which does not exist (create it, or point log.file at a file)", strconv.Quote(dest))
	}
	if errors.Is(err, syscall.ELOOP) {
		return fmt.Sprintf("is a symlink to %s in a loop of symlinks (point log.file at a file)", strconv.Quote(dest))
	}
	if err != nil {
		return ""
	}
	if why := notALog(path, st.Mode()); why != "" {
		return fmt.Sprintf("is a symlink to %s, which %s", strconv.Quote(dest), why)
	}
	return ""
}

// ThroughAFile returns the closest existing ancestor of path when it is
// not a directory (path then names nothing that can ever be created:
// ENOTDIR), or "". Creating the directories of a log or lock there fails
// with "not a directory", which no permission or free space fixes.
func ThroughAFile(path string) string {
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		if st, err := os.Stat(dir); err == nil {
			if st.IsDir() {
				return ""
			}
			return dir
		}
		if dir == filepath.Dir(dir) {
			return ""
		}
	}
}

// notALog is LogFileProblem for what a path, links followed, names.
func notALog(path string, m fs.FileMode) string {
	const device = `: the log must be a regular file, which rotates and which status reads back (name one, or "-" for standard output)`
	switch {
	case m.IsRegular():
		return ""
	case m.IsDir():
		// lumberjack, used before, even renamed it as if it were a
		// full log.
		return fmt.Sprintf("is a directory (name a file in it, such as %s)", strconv.Quote(filepath.Join(path, "autodeploy.log")))
	case m&fs.ModeNamedPipe != 0:
		// Opening it for writing blocks until a reader opens it.
		return "is a named pipe (FIFO): a write to it waits for a reader, forever under cron (name a regular file)"
	case m&fs.ModeSocket != 0:
		return "is a socket" + device
	case m&fs.ModeCharDevice != 0:
		return "is a character device" + device
	case m&fs.ModeDevice != 0:
		return "is a block device" + device
	}
	return "is not a regular file" + device
}
