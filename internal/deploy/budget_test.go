package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
)

// Every wait of a run on Flux draws on one flux.reconcileTimeout (issue 17
// item 12), and a repository that did not answer is remembered.
func TestFluxWaitsShareOneBudget(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	var log bytes.Buffer
	r := &Runner{Config: &config.Config{Flux: config.Flux{ReconcileTimeout: time.Minute}}, Log: runlog.New(&log), Now: func() time.Time { return now }}
	ctx, done := r.startFluxWaits(context.Background())
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > time.Minute {
		t.Fatalf("first wait's deadline %v, want within flux.reconcileTimeout", d)
	}
	now = now.Add(45 * time.Second)
	done()
	if left := r.fluxLeft(); left != 15*time.Second {
		t.Errorf("left = %s, want 15s", left)
	}
	_, done = r.fluxWait(context.Background())
	now = now.Add(20 * time.Second)
	done()
	ctx, done = r.fluxWait(context.Background())
	defer done()
	if ctx.Err() == nil {
		t.Error("a wait after the budget is spent is not done at once")
	}

	api, web := flux.Ref{Namespace: "flux-system", Name: "api"}, flux.Ref{Namespace: "flux-system", Name: "web"}
	w := r.noteSilent([]flux.Outcome{{Ref: api, NoAnswer: true}, {Ref: web, OK: true}})
	if len(w) != 1 || !strings.HasPrefix(w[0], FluxSilentWarning) || !strings.Contains(w[0], "1 of 2") || !strings.Contains(w[0], "flux-system/api") {
		t.Errorf("warnings = %q", w)
	}
	if !strings.Contains(log.String(), `level=WARN msg="Flux has stopped answering" reason="1 of 2 ImageRepositories`) {
		t.Errorf("log: %s", log.String())
	}
	if !r.fluxSilent(api) || r.fluxSilent(web) {
		t.Errorf("silent: api %v, web %v", r.fluxSilent(api), r.fluxSilent(web))
	}
	// The next run starts a new account.
	r.startFluxWaits(context.Background())
	if r.fluxSilent(api) || r.fluxLeft() != time.Minute {
		t.Error("the account carried over to the next run")
	}
	if w := r.noteSilent([]flux.Outcome{{Ref: web, OK: true}}); w != nil {
		t.Errorf("warnings = %q when every repository answered", w)
	}
}

// A run (or the watch's pass) stopped by SIGTERM while Flux had not yet
// answered its rescan logged "Flux has stopped answering: 2 of 2
// ImageRepositories did not answer the rescan within 1m0s ... is
// image-reflector-controller running?" after 7 s: a false alarm, on the
// watch's every stop (issue 18, fifth pass). A rescan the command stopped
// waiting for says nothing of Flux.
func TestInterruptedRescanIsNotFluxSilent(t *testing.T) {
	r, log, rescan := rescanRunner(t)
	r.Config.Flux.ReconcileTimeout = time.Hour
	warnings := rescan(interrupted())
	for _, w := range warnings {
		if strings.HasPrefix(w, FluxSilentWarning) {
			t.Errorf("warning %q for a rescan the run stopped waiting for", w)
		}
	}
	if strings.Contains(log.String(), FluxSilentWarning) {
		t.Errorf("log says Flux is silent:\n%s", log.String())
	}
	if r.fluxSilent(flux.Ref{Namespace: "flux-system", Name: fcName}) {
		t.Error("the repository is remembered as silent")
	}
}

// "asking Flux to rescan 1 image repositories" (issue 18, fifth pass).
func TestRescanProgressCounts(t *testing.T) {
	r, _, rescan := rescanRunner(t)
	var said []string
	r.Progress = func(_, msg string) { said = append(said, msg) }
	rescan(context.Background())
	if len(said) == 0 || said[0] != "asking Flux to rescan 1 image repository" {
		t.Errorf("progress %q, want it to start with the rescan of 1 image repository", said)
	}
}

// A run stopped by SIGTERM during its rescan (the wait for Flux, up to
// flux.reconcileTimeout: where a run spends most of its time when Flux
// is slow, and where the watch's start pass is on every stop) ended with
// no line of its own, and the command's "run failed error=context
// canceled": status counted it failed, while one stopped a moment later,
// in its rollouts, was "interrupted" (issue 18, fifth pass). Both end
// with the run's "run interrupted" line, and the result says so.
func TestRunInterruptedDuringTheRescan(t *testing.T) {
	c := newFakeCluster(t, aaa, bbb, true)
	var log bytes.Buffer
	r := c.runner(svc(), nil, &log)
	r.Config.Flux.ReconcileTimeout = time.Hour
	res, err := r.Run(interrupted(), "r-1", Options{})
	if !errors.Is(err, context.Canceled) || res == nil || !res.Cancelled {
		t.Fatalf("Run = %+v, %v; want the result interrupted and context.Canceled", res, err)
	}
	if !strings.Contains(log.String(), `msg="run interrupted`) {
		t.Errorf("no 'run interrupted' line:\n%s", log.String())
	}
}

// rescanRunner is a Runner on a fake cluster whose ImageRepository never
// answers, its log, and its rescan of the one policy with ctx.
func rescanRunner(t *testing.T) (*Runner, *bytes.Buffer, func(context.Context) []string) {
	c := newFakeCluster(t, aaa, bbb, true)
	log := &bytes.Buffer{}
	r := c.runner(svc(), nil, log)
	api, err := flux.Detect(context.Background(), c.kube.Discovery())
	if err != nil {
		t.Fatal(err)
	}
	p := flux.ParsePolicy(fcPolicy(bbb))
	return r, log, func(ctx context.Context) []string {
		return r.reconcile(ctx, api, map[string]*flux.Policy{p.Key(): &p})
	}
}

// interrupted is a context a signal cancelled, as cli's interruptContext
// cancels it.
func interrupted() context.Context {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(fmt.Errorf("interrupted (SIGINT or SIGTERM): %w", context.Canceled))
	return ctx
}
