// Package config loads and validates the autodeploy configuration file.
//
// The file is decoded strictly: unknown keys, wrong types and invalid values
// are all reported together, each with its line number, so that a typo in a
// file that cron uses unattended fails loudly instead of being silently
// ignored, and one edit fixes everything. Everything the rest of the program
// needs is resolved here, so callers never apply defaults themselves.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/robfig/cron/v3"
)

// Defaults applied to keys that are absent from the file. They are exported so
// that documentation and `status` output can quote them without duplicating
// the values.
const (
	// DefaultSchedule runs every two minutes: frequent enough that a new
	// image is live shortly after Flux detects it, cheap enough for a node
	// that is mostly idle.
	DefaultSchedule = "*/2 * * * *"
	// DefaultLockFile lives on tmpfs so that a stale lock cannot survive a
	// reboot.
	DefaultLockFile = "/run/lock/autodeploy.lock"
	// DefaultRunTimeout bounds a whole `autodeploy run` so that a hung API
	// call cannot stack up cron invocations behind the lock forever.
	DefaultRunTimeout = 15 * time.Minute
	// OwnedPolicyPrefix begins the default name of the ImagePolicy
	// autodeploy owns for a promoted service applied from git
	// (promote.imagePolicy): autodeploy-<service>.
	OwnedPolicyPrefix = "autodeploy-"

	// DefaultLogFile is where runs started by cron leave their trace.
	DefaultLogFile = "/var/log/autodeploy/autodeploy.log"
	// DefaultLogMaxSizeMB is the size at which the log file is rotated.
	DefaultLogMaxSizeMB = 10
	// DefaultLogMaxBackups is the number of rotated files kept (0 keeps all).
	DefaultLogMaxBackups = 5
	// DefaultLogMaxAgeDays is the age after which rotated files are removed
	// (0 keeps them regardless of age).
	DefaultLogMaxAgeDays = 30
	// DefaultLogCompress gzips rotated files.
	DefaultLogCompress = true

	// DefaultFluxNamespace is where Flux installs itself and, usually, where
	// ImagePolicies live.
	DefaultFluxNamespace = "flux-system"
	// DefaultFluxReconcileTimeout bounds the wait for Flux to re-scan the
	// image repositories before the policies are read.
	DefaultFluxReconcileTimeout = time.Minute

	// DefaultNamespace is the namespace of a service's Deployment when
	// neither the service nor the defaults section names one.
	DefaultNamespace = "default"
	// DefaultRolloutTimeout bounds the wait for a Deployment rollout.
	DefaultRolloutTimeout = 5 * time.Minute
	// DefaultAutoRollback restores the previous image when a rollout or its
	// health check fails, so that a bad image does not stay live until a
	// human notices.
	DefaultAutoRollback = true

	// DefaultHealthExpectStatus is the HTTP status a healthy service answers.
	DefaultHealthExpectStatus = 200
	// DefaultHealthTimeout bounds the whole health check, retries included.
	DefaultHealthTimeout = 30 * time.Second
	// DefaultHealthInterval is the pause between health check attempts.
	DefaultHealthInterval = 2 * time.Second
)

// Config is a loaded configuration with every default applied.
type Config struct {
	// Schedule is the cron expression (5 fields or a descriptor such as
	// @hourly) that the crontab entry is expected to use; `status` shows the
	// next run computed from it.
	Schedule string
	LockFile string
	// Lock selects the lock against overlapping runs: the file lock of one
	// host (LockFile), or a Lease in the cluster for several hosts or runs
	// inside the cluster.
	Lock       Lock
	RunTimeout time.Duration
	Log        Log
	Flux       Flux
	Defaults   Defaults
	// Services is never empty and keeps the file's order, which is the order
	// in which services are deployed.
	Services []Service
	// Notify are the channels told about deployments; none by default.
	Notify []Notify
	// Metrics says where the Prometheus metrics go; nowhere by default.
	Metrics Metrics
	// Path is the name the configuration was loaded from, for messages.
	Path string

	schedule cron.Schedule
}

// Log configures the rotating log file written by cron-started runs.
type Log struct {
	File       string
	MaxSizeMB  int
	MaxBackups int
	MaxAgeDays int
	Compress   bool
}

// Flux locates the Flux installation whose ImagePolicies are followed.
type Flux struct {
	Namespace        string
	ReconcileTimeout time.Duration
}

// Promote is a service's promotion from another service (staging ->
// production): it takes the exact image From runs, verified with its soak
// passed, at least After since it was verified there.
type Promote struct {
	From  string
	After time.Duration
	// PolicyNamespace and PolicyName name the ImagePolicy autodeploy owns
	// for the service when Flux applies its Deployment from git
	// (promote.imagePolicy; default autodeploy-<service> in the namespace
	// of the chain's root ImagePolicy, the namespace whose policies the
	// ImageUpdateAutomation lists): it selects exactly the promoted tag,
	// so that the automation writes it to git.
	PolicyNamespace, PolicyName string
	// RootPolicyNamespace and RootPolicyName name the ImagePolicy of the
	// chain's first service: the owned policy selects over its
	// ImageRepository.
	RootPolicyNamespace, RootPolicyName string
}

// Defaults holds the per-service settings used when a service omits them.
type Defaults struct {
	Namespace      string
	RolloutTimeout time.Duration
	Soak           time.Duration
	AutoRollback   bool
	// DeployWindows gate the rollouts of services that set none.
	DeployWindows []DeployWindow
}

// Service is one Deployment kept on the image its ImagePolicy selects. It is
// fully resolved after Load: every default has been applied.
type Service struct {
	Name       string
	Namespace  string
	Deployment string
	// Container is empty when the Deployment is expected to have exactly one
	// container; that can only be checked against the cluster, at run time.
	Container       string
	PolicyNamespace string
	PolicyName      string
	// Promote, when set, is where the service takes its image from
	// instead of an ImagePolicy (PolicyNamespace and PolicyName are then
	// empty).
	Promote        *Promote
	RolloutTimeout time.Duration
	// Soak is how long a verified rollout is watched before it counts as
	// soaked: a container restart, a pod leaving Ready or a failing health
	// check meanwhile rolls it back as a failed rollout (0: no soak).
	Soak         time.Duration
	AutoRollback bool
	// DeployWindows are when a rollout may start (the service's own, or
	// the defaults'); none means at any time. Verifies and rollbacks are
	// never gated.
	DeployWindows []DeployWindow
	// Health is nil when the service has no health check, in which case a
	// completed rollout is taken as success.
	Health *Health
	// Line is where the service is defined, so that run-time errors can
	// point back into the file.
	Line int
}

// Health is an HTTP check run after a rollout completes, to catch images that
// start but do not work.
type Health struct {
	// URL is given inline, or read from an environment variable or a file
	// at each check (a URL that holds a credential, kept out of this file:
	// manifests cronjob puts such a URL in the Secret).
	URL Secret
	// Authorization is the value of the request's Authorization header
	// ("Bearer ...", "Basic ..."), from an environment variable or a file:
	// a credential kept out of the URL and of this file.
	Authorization Secret
	ExpectStatus  int
	// ExpectBody, when non-empty, is a text/template with the fields .Tag and
	// .Image; its rendering must appear in the response body. Checking the
	// tag proves the answer comes from the new pods, not from old ones still
	// draining.
	ExpectBody string
	Timeout    time.Duration
	Interval   time.Duration
}

// ShownURL is how the check's URL is named before it is read: the inline
// URL redacted, or the variable or file it comes from.
func (h Health) ShownURL() string {
	if h.URL.Env == "" && h.URL.File == "" {
		return RedactURL(h.URL.Value)
	}
	return h.URL.String()
}

// bodyFields are the only names ExpectBody may use. A map with
// missingkey=error (rather than a struct) keeps error messages free of Go
// type names.
func bodyFields(image, tag string) map[string]string {
	return map[string]string{"Image": image, "Tag": tag}
}

// RenderBody renders ExpectBody for the image being deployed. It returns ""
// when no body is expected.
func (h Health) RenderBody(image, tag string) (string, error) {
	if h.ExpectBody == "" {
		return "", nil
	}
	t, err := template.New("expectBody").Option("missingkey=error").Parse(h.ExpectBody)
	if err != nil {
		return "", fmt.Errorf("health.expectBody: %w", err)
	}
	var b strings.Builder
	if err := t.Execute(&b, bodyFields(image, tag)); err != nil {
		return "", fmt.Errorf("health.expectBody: %w", err)
	}
	return b.String(), nil
}

// Service returns the service with the given name.
func (c *Config) Service(name string) (Service, bool) {
	for _, s := range c.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// Next returns the first scheduled run strictly after t, or the zero time
// when the schedule is invalid or never fires (such as "0 0 30 2 *").
func (c *Config) Next(t time.Time) time.Time {
	s := c.schedule
	if s == nil {
		// Config built by hand rather than by Load.
		var err error
		if s, err = parseSchedule(c.Schedule); err != nil {
			return time.Time{}
		}
	}
	return s.Next(t)
}

// NeverFires says, when the schedule names no time that comes (robfig's
// cron looks five years ahead: "0 0 31 2 *", cron's idiom for a job
// disabled), that nothing runs from it; "" when it fires. Such a schedule
// is valid and kept so; config validate and doctor warn of it (they said
// "ok", and every cron line, timer and watch tick of it ran nothing; issue
// 18, sixth pass).
func (c *Config) NeverFires(now time.Time) string {
	if !c.Next(now).IsZero() {
		return ""
	}
	return fmt.Sprintf("schedule %q never fires (no such date comes): no run starts from its cron line, timer or watch ticks", c.Schedule)
}

// Problem is one error found in a configuration file.
type Problem struct {
	// Line is 1-based; 0 when the problem concerns the file as a whole.
	Line int
	// Path locates the offending value, such as "services[0].health.url".
	// It is empty when Msg names the location itself, as for unknown keys,
	// which have no path in the schema.
	Path string
	Msg  string
}

// ValidationError lists every problem found in a configuration file, sorted
// by line, so that one edit-check cycle can fix them all.
type ValidationError struct {
	File     string
	Problems []Problem
}

// Error formats one problem per line as "file:line: path: message", the
// format editors and CI annotations understand.
func (e *ValidationError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
		if p.Path != "" {
			b.WriteString(p.Path)
			b.WriteString(": ")
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// FileError reports a configuration file that could not be read. It is a
// distinct type so that the CLI can treat it, like ValidationError, as a
// usage error rather than a deployment failure.
type FileError struct {
	Path string
	Err  error
	// Hint is the fix; empty means the file came from --config or
	// AUTODEPLOY_CONFIG.
	Hint string
}

func (e *FileError) Error() string {
	hint := e.Hint
	if hint == "" {
		hint = "use --config or AUTODEPLOY_CONFIG to point at another file"
	}
	if errors.Is(e.Err, fs.ErrNotExist) {
		return fmt.Sprintf("config file %s does not exist (%s)", e.Path, hint)
	}
	return fmt.Sprintf("cannot read config file: %v (%s)", e.Err, hint)
}

func (e *FileError) Unwrap() error { return e.Err }

// Lock types.
const (
	LockFile  = "file"
	LockLease = "lease"
)

// Defaults of the lease lock.
const (
	DefaultLeaseName     = "autodeploy"
	DefaultLeaseDuration = 30 * time.Second
)

// Lock is the `lock` section.
type Lock struct {
	Type           string // file (default) or lease
	LeaseNamespace string // default: flux.namespace
	LeaseName      string
	// LeaseDuration: a holder that stops renewing for this long (a crashed
	// host) loses the lease.
	LeaseDuration time.Duration
}

// LogToStdout is the log.file value that writes the log to standard output
// without rotation, for a CronJob whose logs the cluster collects.
const LogToStdout = "-"

// WithSources returns services with the services they are promoted from
// (config promote, the whole chain), each once: what must be read to plan
// services.
func (c *Config) WithSources(services []Service) []Service {
	out := slices.Clone(services)
	for i := 0; i < len(out); i++ {
		if p := out[i].Promote; p != nil {
			if src, ok := c.Service(p.From); ok && !slices.ContainsFunc(out, func(s Service) bool { return s.Name == src.Name }) {
				out = append(out, src)
			}
		}
	}
	return out
}

// DeploymentNamespaces lists the namespaces of services' Deployments, in
// order, once each: commands read each with one LIST per kind.
func DeploymentNamespaces(services []Service) []string {
	return distinct(services, func(s Service) string { return s.Namespace })
}

// PolicyNamespaces lists the namespaces of services' ImagePolicies: their
// own, and for a promoted service the one autodeploy owns for it under
// GitOps (promote.imagePolicy), which runs, status and doctor read and
// forget deletes.
func PolicyNamespaces(services []Service) []string {
	return slices.DeleteFunc(distinct(services, func(s Service) string {
		if s.Promote != nil {
			return s.Promote.PolicyNamespace
		}
		return s.PolicyNamespace
	}), func(ns string) bool { return ns == "" })
}

func distinct(services []Service, key func(Service) string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range services {
		if k := key(s); !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// runOverhead covers what a run does besides waiting: discovery, the
// LISTs, the lock, the reads and patches of each service (each bounded by
// the request timeout, 30 s by default, but fast in practice).
const runOverhead = 30 * time.Second

// RunDeadline is the most a run can last, everything included: the rescan
// (flux.reconcileTimeout), the rollouts (runTimeout), the rollback of the
// last service, which gets its own rolloutTimeout even once the budget is
// spent (a broken rollout must not be left in place), and that service's
// notifications (per channel: two attempts of its timeout and the pause
// between). A run is stopped at this deadline as a signal would stop it;
// the CronJob's activeDeadlineSeconds and systemd's TimeoutStartSec are a
// minute more, so that those backstops never cut a rollback short.
func (c *Config) RunDeadline() time.Duration {
	var rollback time.Duration
	for _, s := range c.Services {
		rollback = max(rollback, s.RolloutTimeout)
	}
	var notify time.Duration
	for _, n := range c.Notify {
		notify += 2*n.Timeout + time.Second
	}
	return c.Flux.ReconcileTimeout + c.RunTimeout + rollback + notify + runOverhead
}

// BackstopSeconds is RunDeadline plus a minute, in seconds: the limit an
// outside supervisor (CronJob, systemd) may put on a run.
func (c *Config) BackstopSeconds() int {
	return int((c.RunDeadline() + time.Minute).Seconds())
}
