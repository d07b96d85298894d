// Package metrics writes the Prometheus metrics of each run: for a cron
// job, node_exporter's textfile collector is the Prometheus way (a file
// written atomically at the end of every run), plus an optional
// Pushgateway. Counters keep counting across runs by carrying over the
// values of the previous file.
package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	neturl "net/url"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
)

// FileName is the file written in the textfile directory.
const FileName = "autodeploy.prom"

// Names of every metric written; the Grafana dashboard may use no other.
const (
	LastRunTimestamp   = "autodeploy_last_run_timestamp_seconds"
	LastRunDuration    = "autodeploy_last_run_duration_seconds"
	LastRunSuccess     = "autodeploy_last_run_success"
	RunsTotal          = "autodeploy_runs_total"
	UpToDate           = "autodeploy_service_up_to_date"
	Held               = "autodeploy_service_held"
	LastDeployTime     = "autodeploy_service_last_deploy_timestamp_seconds"
	LastRolloutSeconds = "autodeploy_service_last_rollout_duration_seconds"
	DeploymentsTotal   = "autodeploy_deployments_total"
	// The watch's latencies, from the moment it saw an ImagePolicy select
	// a new image.
	PolicyToPatchSeconds   = "autodeploy_service_policy_change_to_patch_seconds"
	PolicyToVerdictSeconds = "autodeploy_service_policy_change_to_verdict_seconds"
	// EventsTotal counts a service's pipeline events (event label:
	// EventPromoted, EventSoakPassed, EventSoakFailed, EventHoldExpired),
	// which a rollout's result does not say.
	EventsTotal   = "autodeploy_service_events_total"
	OutsideWindow = "autodeploy_service_outside_window"
)

// Values of EventsTotal's event label: the notifications' kinds.
const (
	EventPromoted    = "promoted"
	EventSoakPassed  = "soak-passed"
	EventSoakFailed  = "soak-failed"
	EventHoldExpired = "hold-expired"
)

// Names lists the metrics every run writes (the dashboard shows each).
var Names = []string{LastRunTimestamp, LastRunDuration, LastRunSuccess, RunsTotal, UpToDate, Held, LastDeployTime, LastRolloutSeconds, DeploymentsTotal, EventsTotal, OutsideWindow}

// WatchNames are the metrics only a watch's run that patched writes.
var WatchNames = []string{PolicyToPatchSeconds, PolicyToVerdictSeconds}

// Registry builds the metrics of one run, starting from prev (the metrics
// of the previous run, possibly empty) so that counters and per-service
// "last" values carry over. runErr is a failure of the run as a whole.
func Registry(res *deploy.Result, runErr error, prev map[string]*dto.MetricFamily, now time.Time) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		reg.MustRegister(g)
		return g
	}
	lastTS := gauge(LastRunTimestamp, "When the last run started, in seconds since the epoch.")
	lastDur := gauge(LastRunDuration, "How long the last run took.")
	lastOK := gauge(LastRunSuccess, "1 if the last run deployed everything it tried and reached the cluster, else 0.")
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	runs := counter(RunsTotal, "Runs by result; carried over from run to run.", "result")
	upToDate := gauge(UpToDate, "1 if the service ran its policy's latest image after the run.", "service")
	held := gauge(Held, "1 if the service is held (autodeploy hold, or a manual rollback).", "service")
	deployTS := gauge(LastDeployTime, "When autodeploy last deployed the service successfully.", "service")
	rolloutDur := gauge(LastRolloutSeconds, "How long the service's last rollout took, health check included.", "service")
	deploys := counter(DeploymentsTotal, "Rollouts by service and result; carried over from run to run.", "service", "result")
	toPatch := gauge(PolicyToPatchSeconds, "autodeploy watch: from seeing the ImagePolicy select a new image to the API server accepting the service's patch, last time.", "service")
	toVerdict := gauge(PolicyToVerdictSeconds, "autodeploy watch: from seeing the ImagePolicy select a new image to the rollout's verdict (verified, rolled back, ...), last time.", "service")
	events := counter(EventsTotal, "Promotions, soaks passed and failed, and holds expired, by service; carried over from run to run.", "service", "event")
	outside := gauge(OutsideWindow, "1 if the last run did not start the service's deploy because no deploy window was open long enough for it.", "service")

	// Carry over first; this run's values then add to or replace them.
	carry(prev, RunsTotal, func(l prometheus.Labels, v float64) { addTo(runs, l, v) })
	carry(prev, DeploymentsTotal, func(l prometheus.Labels, v float64) { addTo(deploys, l, v) })
	carry(prev, EventsTotal, func(l prometheus.Labels, v float64) { addTo(events, l, v) })
	carry(prev, LastDeployTime, func(l prometheus.Labels, v float64) { setTo(deployTS, l, v) })
	carry(prev, LastRolloutSeconds, func(l prometheus.Labels, v float64) { setTo(rolloutDur, l, v) })
	carry(prev, PolicyToPatchSeconds, func(l prometheus.Labels, v float64) { setTo(toPatch, l, v) })
	carry(prev, PolicyToVerdictSeconds, func(l prometheus.Labels, v float64) { setTo(toVerdict, l, v) })

	ok := runErr == nil && res != nil && !res.Cancelled
	if res != nil {
		lastTS.WithLabelValues().Set(float64(res.Started.UnixMilli()) / 1000)
		lastDur.WithLabelValues().Set(res.Duration.Seconds())
		for _, s := range res.Services {
			switch s.Outcome {
			case deploy.OutcomeDeployed, deploy.OutcomeVerified:
				deployTS.WithLabelValues(s.Service).Set(float64(now.UnixMilli()) / 1000)
			case deploy.OutcomeRolledBack, deploy.OutcomeFailed, deploy.OutcomeRollbackFailed, deploy.OutcomeNotRun, deploy.OutcomeUnverified:
				ok = false
			}
			if seen := res.PolicySeen; !seen.IsZero() && !s.Patched.IsZero() {
				toPatch.WithLabelValues(s.Service).Set(s.Patched.Sub(seen).Seconds())
				toVerdict.WithLabelValues(s.Service).Set(s.Ended.Sub(seen).Seconds())
			}
			if s.Duration > 0 {
				rolloutDur.WithLabelValues(s.Service).Set(s.Duration.Seconds())
				deploys.WithLabelValues(s.Service, string(s.Outcome)).Add(1)
			}
			current := s.Outcome == deploy.OutcomeUpToDate || s.Outcome == deploy.OutcomeDeployed || s.Outcome == deploy.OutcomeVerified ||
				s.Outcome == deploy.OutcomeSoaking || s.Outcome == deploy.OutcomeSoaked
			upToDate.WithLabelValues(s.Service).Set(b2f(current))
			held.WithLabelValues(s.Service).Set(b2f(s.Held))
			outside.WithLabelValues(s.Service).Set(b2f(s.OutsideWindow && s.Outcome == deploy.OutcomeSkipped))
			// Every series from the service's first run, at 0: a counter
			// that appears at its first event loses that event to
			// increase() and rate().
			for _, e := range []string{EventPromoted, EventSoakPassed, EventSoakFailed, EventHoldExpired} {
				events.WithLabelValues(s.Service, e)
			}
			for _, e := range serviceEvents(s) {
				if !res.DryRun {
					events.WithLabelValues(s.Service, e).Add(1)
				}
			}
		}
	} else {
		lastTS.WithLabelValues().Set(float64(now.UnixMilli()) / 1000)
	}
	lastOK.WithLabelValues().Set(b2f(ok))
	runs.WithLabelValues(map[bool]string{true: "success", false: "failure"}[ok]).Add(1)
	return reg
}

// serviceEvents are the pipeline events of one service's run: a deploy of
// a promoted service that was verified (whatever its soak did after), the
// end of a soak, a hold the run released. A dry run has none.
func serviceEvents(s deploy.ServiceResult) []string {
	var out []string
	if s.Outcome == deploy.OutcomePlanned {
		return nil
	}
	if s.HoldExpired {
		out = append(out, EventHoldExpired)
	}
	verified := s.Outcome == deploy.OutcomeDeployed || s.Outcome == deploy.OutcomeVerified || s.Soak != ""
	if s.PromotedFrom != "" && s.Action == deploy.Deploy && verified {
		out = append(out, EventPromoted)
	}
	switch s.Soak {
	case deploy.SoakPassed:
		out = append(out, EventSoakPassed)
	case deploy.SoakFailed:
		out = append(out, EventSoakFailed)
	}
	return out
}

// carry calls set with each sample of the previous file's metric name.
func carry(prev map[string]*dto.MetricFamily, name string, set func(prometheus.Labels, float64)) {
	mf := prev[name]
	if mf == nil {
		return
	}
	for _, m := range mf.GetMetric() {
		labels := prometheus.Labels{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		switch {
		case m.GetCounter() != nil:
			set(labels, m.GetCounter().GetValue())
		case m.GetGauge() != nil:
			set(labels, m.GetGauge().GetValue())
		case m.GetUntyped() != nil:
			set(labels, m.GetUntyped().GetValue())
		}
	}
}

// addTo and setTo ignore samples whose labels no longer fit (a file of
// another version): they are dropped rather than failing the run.
func addTo(c *prometheus.CounterVec, l prometheus.Labels, v float64) {
	if m, err := c.GetMetricWith(l); err == nil && v >= 0 {
		m.Add(v)
	}
}

func setTo(g *prometheus.GaugeVec, l prometheus.Labels, v float64) {
	if m, err := g.GetMetricWith(l); err == nil {
		m.Set(v)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ReadPrevious parses the metrics file of the previous run; a missing file
// is an empty start, a garbled one an error (and an empty start).
// It is read as config.ReadFile reads: a named pipe there blocked the run
// forever, holding its lock (issue 18, fourth pass).
func ReadPrevious(path string) (map[string]*dto.MetricFamily, error) {
	b, err := config.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w (counters start again from 0)", err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w (counters start again from 0)", path, err)
	}
	return mfs, nil
}

// WriteTextfile writes reg to dir/autodeploy.prom through a temporary file
// renamed into place, so node_exporter never reads a partial file.
func WriteTextfile(dir string, reg *prometheus.Registry) error {
	return prometheus.WriteToTextfile(filepath.Join(dir, FileName), reg)
}

// Push sends reg to a Pushgateway under job "autodeploy", with a timeout:
// a Pushgateway that hangs must not hold the run (and its lock). The
// library's errors quote the URL with its password; they go to the log,
// so the URL is redacted in them.
// ctx stops it: a Pushgateway that did not answer kept a run for the
// whole client timeout after SIGTERM (issue 18, fourth pass).
func Push(ctx context.Context, url string, reg *prometheus.Registry) error {
	err := push.New(url, "autodeploy").Gatherer(reg).Client(&http.Client{Timeout: 10 * time.Second}).PushContext(ctx)
	if err != nil {
		if ctx.Err() != nil {
			// The library's text says no more than the cause.
			return fmt.Errorf("push to %s stopped: %w", config.RedactURL(url), context.Cause(ctx))
		}
		var ue *neturl.Error
		if errors.As(err, &ue) {
			// net/http's spelling of the URL, not the config's (scheme
			// lower-cased, path escaped; a lone user name, a token, kept):
			// matching the config's string missed it (issue 18, ninth pass).
			// Replaced through its structure, as health.attempt does.
			return fmt.Errorf("%s %s: %w", ue.Op, config.RedactURL(ue.URL), ue.Err)
		}
		// The library's own errors quote the URL as the config spells it.
		return errors.New(config.RedactIn(err.Error(), url))
	}
	return nil
}
