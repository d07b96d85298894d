package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/hosttest"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func result(outcomes map[string]deploy.Outcome) *deploy.Result {
	r := &deploy.Result{Started: t0, Duration: 3 * time.Second}
	for _, svc := range []string{"api", "web", "db"} {
		o, ok := outcomes[svc]
		if !ok {
			continue
		}
		sr := deploy.ServiceResult{Decision: deploy.Decision{Service: svc}, Outcome: o}
		if o != deploy.OutcomeUpToDate && o != deploy.OutcomeSkipped {
			sr.Duration = 2 * time.Second
		}
		if o == deploy.OutcomeSkipped {
			sr.Held = true
		}
		r.Services = append(r.Services, sr)
	}
	return r
}

func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	mf := mfs[name]
	if mf == nil {
		t.Fatalf("metric %s missing", name)
	}
next:
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			if labels[lp.GetName()] != lp.GetValue() {
				continue next
			}
		}
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s%v missing", name, labels)
	return 0
}

// Three runs in a row: the file parses back with Prometheus's own parser,
// values match what happened, counters keep counting.
func TestTextfileAcrossRuns(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	runs := []struct {
		res *deploy.Result
		err error
	}{
		{res: result(map[string]deploy.Outcome{"api": deploy.OutcomeDeployed, "web": deploy.OutcomeUpToDate})},
		{res: result(map[string]deploy.Outcome{"api": deploy.OutcomeRolledBack, "web": deploy.OutcomeSkipped})},
		{err: errors.New("cluster unreachable")},
	}
	for i, r := range runs {
		prev, err := ReadPrevious(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteTextfile(dir, Registry(r.res, r.err, prev, t0.Add(time.Duration(i)*time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := ReadPrevious(path)
	if err != nil {
		t.Fatal(err)
	}
	none := map[string]string{}
	if v := value(t, mfs, RunsTotal, map[string]string{"result": "success"}); v != 1 {
		t.Errorf("successful runs = %v, want 1", v)
	}
	if v := value(t, mfs, RunsTotal, map[string]string{"result": "failure"}); v != 2 {
		t.Errorf("failed runs = %v, want 2", v)
	}
	if v := value(t, mfs, DeploymentsTotal, map[string]string{"service": "api", "result": "deployed"}); v != 1 {
		t.Errorf("api deployed = %v", v)
	}
	if v := value(t, mfs, DeploymentsTotal, map[string]string{"service": "api", "result": "rolled-back"}); v != 1 {
		t.Errorf("api rolled back = %v", v)
	}
	// Carried over from the first run, which deployed api at t0.
	if v := value(t, mfs, LastDeployTime, map[string]string{"service": "api"}); v != float64(t0.Unix()) {
		t.Errorf("api last deploy = %v, want %d", v, t0.Unix())
	}
	if v := value(t, mfs, LastRolloutSeconds, map[string]string{"service": "api"}); v != 2 {
		t.Errorf("api last rollout = %v", v)
	}
	if v := value(t, mfs, LastRunSuccess, none); v != 0 {
		t.Errorf("last run success = %v", v)
	}
	if mfs[RunsTotal].GetType() != dto.MetricType_COUNTER || mfs[DeploymentsTotal].GetType() != dto.MetricType_COUNTER {
		t.Error("the *_total metrics are not counters")
	}
	// The second run's per-service gauges.
	prevDir := t.TempDir()
	if err := WriteTextfile(prevDir, Registry(runs[1].res, nil, nil, t0)); err != nil {
		t.Fatal(err)
	}
	second, _ := ReadPrevious(filepath.Join(prevDir, FileName))
	if value(t, second, Held, map[string]string{"service": "web"}) != 1 || value(t, second, UpToDate, map[string]string{"service": "api"}) != 0 {
		t.Error("held / up-to-date gauges do not match the run")
	}
	if err := WriteTextfile(prevDir, Registry(runs[0].res, nil, nil, t0)); err != nil {
		t.Fatal(err)
	}
	first, _ := ReadPrevious(filepath.Join(prevDir, FileName))
	for _, n := range Names {
		if _, ok := first[n]; !ok {
			t.Errorf("metric %s not written after a run that deployed", n)
		}
	}
}

// The file is replaced atomically: a reader polling it while runs write
// never sees a partial file.
func TestTextfileIsNeverPartial(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := WriteTextfile(dir, Registry(result(map[string]deploy.Outcome{"api": deploy.OutcomeDeployed}), nil, nil, t0)); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad error
	var reads int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			mfs, err := ReadPrevious(path)
			reads++
			if err != nil || mfs[LastRunSuccess] == nil {
				bad = errors.Join(err, errors.New("incomplete file"))
				return
			}
		}
	}()
	for i := range 200 {
		prev, _ := ReadPrevious(path)
		if err := WriteTextfile(dir, Registry(result(map[string]deploy.Outcome{"api": deploy.OutcomeDeployed, "web": deploy.OutcomeUpToDate}), nil, prev, t0.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if bad != nil {
		t.Fatalf("a reader saw a partial file after %d reads: %v", reads, bad)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(leftovers) != 1 {
		t.Errorf("files left in the directory: %v", leftovers)
	}
}

func TestReadPreviousGarbled(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	os.WriteFile(path, []byte("autodeploy_runs_total{result=\"success\" 3\n"), 0o644)
	if _, err := ReadPrevious(path); err == nil {
		t.Fatal("garbled file accepted")
	}
}

// A Pushgateway gets the same metrics.
func TestPush(t *testing.T) {
	var got []byte
	var method, path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, path = r.Method, r.URL.Path
		got, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	if err := Push(context.Background(), srv.URL, Registry(result(map[string]deploy.Outcome{"api": deploy.OutcomeDeployed}), nil, nil, t0)); err != nil {
		t.Fatal(err)
	}
	if method != http.MethodPut || path != "/metrics/job/autodeploy" || !bytes.Contains(got, []byte(DeploymentsTotal)) {
		t.Errorf("%s %s: %d bytes", method, path, len(got))
	}
}

// A Pushgateway's error (its URL, with the password, is in the library's
// message) goes to the log: the URL is redacted there as everywhere, however
// it is spelled. net/http's error spells it its own way (scheme lower-cased,
// path escaped) and strips a password but not a lone user name (a token):
// "HTTP://TOKEN@host/" was logged whole (issue 18, ninth pass).
func TestPushErrorRedacts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "denied", http.StatusUnauthorized)
	}))
	refused := httptest.NewServer(http.NotFoundHandler())
	refused.Close()
	defer srv.Close()
	for _, tc := range []struct{ name, userinfo, scheme, path, secret, shown string }{
		{"password", "ops:s3cr3t@", "http://", "", "s3cr3t", "ops:redacted@"},
		{"token as the user", "TOK3N@", "http://", "", "TOK3N", "redacted@"},
		{"token, scheme in capitals", "TOK3N@", "HTTP://", "", "TOK3N", "redacted@"},
		{"token, a space in the path", "TOK3N@", "http://", "/push gw/", "TOK3N", "redacted@"},
		{"password, a space in the path", "ops:s3cr3t@", "http://", "/push gw/", "s3cr3t", "ops:redacted@"},
	} {
		for _, base := range []string{srv.URL, refused.URL} {
			u := strings.Replace(base, "http://", tc.scheme+tc.userinfo, 1) + tc.path
			err := Push(context.Background(), u, Registry(result(map[string]deploy.Outcome{"api": deploy.OutcomeDeployed}), nil, nil, t0))
			if err == nil || strings.Contains(err.Error(), tc.secret) || !strings.Contains(err.Error(), tc.shown) {
				t.Errorf("%s: Push(%s) = %v", tc.name, u, err)
			}
		}
	}
}

// A watch's run carries when it saw the policy change: the latencies to
// the patch and to the verdict are written, and carried over by a later
// run without one (a tick pass, a cron run).
func TestWatchLatencies(t *testing.T) {
	dir := t.TempDir()
	res := result(map[string]deploy.Outcome{"api": deploy.OutcomeDeployed, "web": deploy.OutcomeUpToDate})
	res.PolicySeen = t0
	res.Services[0].Patched = t0.Add(40 * time.Millisecond)
	res.Services[0].Ended = t0.Add(1500 * time.Millisecond)
	if err := WriteTextfile(dir, Registry(res, nil, nil, t0)); err != nil {
		t.Fatal(err)
	}
	prev, err := ReadPrevious(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteTextfile(dir, Registry(result(map[string]deploy.Outcome{"api": deploy.OutcomeUpToDate}), nil, prev, t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, FileName))
	for _, want := range []string{PolicyToPatchSeconds + `{service="api"} 0.04`, PolicyToVerdictSeconds + `{service="api"} 1.5`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("want %q in:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), PolicyToPatchSeconds+`{service="web"}`) {
		t.Errorf("a service not patched has a latency:\n%s", b)
	}
}

// The pipeline's events (issue 19) are counted by service and event, and
// keep counting across runs; a deploy a window held back is a gauge of
// the last run.
func TestPipelineEvents(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	sr := func(svc string, mut func(*deploy.ServiceResult)) deploy.ServiceResult {
		s := deploy.ServiceResult{Decision: deploy.Decision{Service: svc, Action: deploy.Deploy}, Outcome: deploy.OutcomeDeployed, Duration: time.Second}
		mut(&s)
		return s
	}
	runs := [][]deploy.ServiceResult{{
		sr("staging", func(s *deploy.ServiceResult) { s.Soak = deploy.SoakPassed }),
		sr("production", func(s *deploy.ServiceResult) { s.PromotedFrom = "staging" }),
		sr("web", func(s *deploy.ServiceResult) {
			s.Action, s.Outcome, s.OutsideWindow = deploy.Skip, deploy.OutcomeSkipped, true
		}),
	}, {
		sr("staging", func(s *deploy.ServiceResult) { s.Outcome, s.Soak = deploy.OutcomeRolledBack, deploy.SoakFailed }),
		// Promoted, then its soak failed in the same run: both happened.
		sr("production", func(s *deploy.ServiceResult) {
			s.PromotedFrom, s.Outcome, s.Soak = "staging", deploy.OutcomeRolledBack, deploy.SoakFailed
		}),
		sr("web", func(s *deploy.ServiceResult) { s.HoldExpired = true }),
	}}
	for i, services := range runs {
		prev, err := ReadPrevious(path)
		if err != nil {
			t.Fatal(err)
		}
		res := &deploy.Result{Started: t0.Add(time.Duration(i) * 2 * time.Minute), Services: services}
		if err := WriteTextfile(dir, Registry(res, nil, prev, res.Started)); err != nil {
			t.Fatal(err)
		}
		mfs, err := ReadPrevious(path)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if v := value(t, mfs, OutsideWindow, map[string]string{"service": "web"}); v != 1 {
				t.Errorf("run 1: web outside its window %v, want 1", v)
			}
			continue
		}
		for _, tt := range []struct {
			svc, event string
			want       float64
		}{
			{"staging", EventSoakPassed, 1}, {"staging", EventSoakFailed, 1},
			{"production", EventPromoted, 2}, {"production", EventSoakFailed, 1},
			{"web", EventHoldExpired, 1},
		} {
			if v := value(t, mfs, EventsTotal, map[string]string{"service": tt.svc, "event": tt.event}); v != tt.want {
				t.Errorf("%s %s = %v, want %v", tt.svc, tt.event, v, tt.want)
			}
		}
		if v := value(t, mfs, OutsideWindow, map[string]string{"service": "web"}); v != 0 {
			t.Errorf("run 2: web outside its window %v, want 0", v)
		}
		if v := value(t, mfs, EventsTotal, map[string]string{"service": "web", "event": EventPromoted}); v != 0 {
			t.Errorf("web promoted = %v, want a series at 0", v)
		}
	}
}

// A named pipe at <textfileDir>/autodeploy.prom blocked the run in
// ReadPrevious forever, holding the run's lock (issue 18, fourth pass):
// it is refused as config.ReadFile refuses it, and the counters start
// again.
func TestReadPreviousThatIsNotAFile(t *testing.T) {
	path := hosttest.Mkfifo(t, filepath.Join(t.TempDir(), FileName))
	var err error
	hosttest.Returns(t, "ReadPrevious of a named pipe", func() { _, err = ReadPrevious(path) })
	if err == nil || !strings.Contains(err.Error(), path+" is a named pipe, not a regular file") {
		t.Errorf("ReadPrevious = %v, want it refused as a named pipe", err)
	}
}

// A Pushgateway that does not answer kept a run for its whole 10 s client
// timeout after SIGTERM (8.5 s seen; issue 18, fourth pass): the push
// stops with the command's context.
func TestPushStopsWithItsContext(t *testing.T) {
	arrived, stop := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-stop // no answer until the test is done
	}))
	defer srv.Close()
	defer close(stop)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	err := Push(ctx, srv.URL, Registry(result(map[string]deploy.Outcome{"api": deploy.OutcomeDeployed}), nil, nil, t0))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Push = %v, want it stopped by its context", err)
	}
}
