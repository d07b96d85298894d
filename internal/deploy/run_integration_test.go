//go:build integration

package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

const reg = "ghcr.io/team-mercurious/"

// fixture is a namespace with services whose Deployments and Flux objects
// (in the same namespace) exist, and a Reflector playing Flux.
type fixture struct {
	e    *kubetest.Env
	refl *fluxsim.Reflector
	v    fluxsim.Version
	cfg  *config.Config
	log  bytes.Buffer
	mu   sync.Mutex
	prog []string
}

type svcSpec struct {
	name, image string
	replicas    int32
	noPolicy    bool
	noDeploy    bool
	extra       string // extra YAML lines for the service
}

func newFixture(t testing.TB, e *kubetest.Env, v fluxsim.Version, specs []svcSpec, cfgExtra string) *fixture {
	t.Helper()
	f := &fixture{e: e, v: v, refl: e.StartReflector(v, e.Namespace)}
	var y strings.Builder
	fmt.Fprintf(&y, "lockFile: %s\nlog: {file: %s}\nflux: {namespace: %s, reconcileTimeout: 20s}\ndefaults: {namespace: %s, rolloutTimeout: 60s}\n%sservices:\n",
		filepath.Join(t.TempDir(), "lock"), filepath.Join(t.TempDir(), "log"), e.Namespace, e.Namespace, cfgExtra)
	for _, s := range specs {
		fmt.Fprintf(&y, "  - name: %s\n%s", s.name, s.extra)
		if !s.noDeploy {
			e.CreateDeployment(kubetest.Deployment{Name: s.name, Image: s.image, Replicas: s.replicas})
		}
		if !s.noPolicy {
			e.CreateImageRepository(v, e.Namespace, s.name, repoOf(s.image))
			e.CreateImagePolicy(v, e.Namespace, s.name, s.name)
			if err := f.refl.Track(context.Background(), s.name, s.name, s.image); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg, err := config.Parse([]byte(y.String()), "test.yaml")
	if err != nil {
		t.Fatalf("config: %v\n%s", err, y.String())
	}
	f.cfg = cfg
	for _, s := range specs {
		if !s.noDeploy {
			if _, err := rollout.Wait(context.Background(), e.Kube, e.Namespace, s.name, rollout.WaitOptions{}); err != nil && !strings.Contains(s.image, ":fail-") && !strings.Contains(s.image, ":crash-") {
				t.Fatalf("initial rollout of %s: %v", s.name, err)
			}
		}
	}
	return f
}

func repoOf(img string) string { return img[:strings.LastIndex(img, ":")] }

func (f *fixture) runner() *deploy.Runner {
	return &deploy.Runner{
		Kube: f.e.Kube, Dynamic: f.e.Dynamic, Config: f.cfg, Now: time.Now,
		Log: runlog.New(&syncWriter{mu: &f.mu, w: &f.log}),
		Progress: func(svc, msg string) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.prog = append(f.prog, svc+": "+msg)
		},
	}
}

func (f *fixture) run(t testing.TB, o deploy.Options) *deploy.Result {
	t.Helper()
	res, err := f.runner().Run(context.Background(), "test", o)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return res
}

type syncWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func outcome(t *testing.T, res *deploy.Result, svc string) deploy.ServiceResult {
	t.Helper()
	for _, s := range res.Services {
		if s.Service == svc {
			return s
		}
	}
	t.Fatalf("no result for %s in %+v", svc, res.Services)
	return deploy.ServiceResult{}
}

func wantOutcome(t *testing.T, res *deploy.Result, svc string, want deploy.Outcome) deploy.ServiceResult {
	t.Helper()
	s := outcome(t, res, svc)
	if s.Outcome != want {
		t.Fatalf("%s: outcome %s (%s %s), want %s", svc, s.Outcome, s.Reason, s.Error, want)
	}
	return s
}

// A tag pushed before the run is deployed by this run: the run asks Flux to
// rescan and waits for the answer before it plans.
func TestRunDeploysWhatFluxFindsNow(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api-gateway", image: reg + "api-gateway:sha-1111111", replicas: 2}}, "")
	f.refl.Push("api-gateway", reg+"api-gateway:sha-2222222")

	res := f.run(t, deploy.Options{})
	wantOutcome(t, res, "api-gateway", deploy.OutcomeDeployed)
	if n := f.refl.Requests("imagerepositories", "api-gateway"); n != 1 {
		t.Errorf("ImageRepository reconcile requests = %d, want 1", n)
	}
	if n := f.refl.Requests("imagepolicies", "api-gateway"); n != 1 {
		t.Errorf("ImagePolicy reconcile requests = %d, want 1 (v1 policies answer them)", n)
	}
	// autodeploy's "verified" annotation bumps the generation (Deployments
	// count annotation changes), so let the controller observe it first.
	d, err := rollout.Wait(context.Background(), e.Kube, e.Namespace, "api-gateway", rollout.WaitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := kubetest.Image(d); img != reg+"api-gateway:sha-2222222" {
		t.Fatalf("image = %s", img)
	}
	if d.Status.AvailableReplicas != 2 || rollout.Evaluate(d).State != rollout.Complete {
		t.Fatalf("not Available: %+v (generation %d, evaluate %+v)", d.Status, d.Generation, rollout.Evaluate(d))
	}
	if d.Annotations[deploy.AnnVerified] != "true" || d.Annotations[deploy.AnnDeployedImage] != reg+"api-gateway:sha-2222222" {
		t.Errorf("annotations = %v", d.Annotations)
	}
	if cause := d.Annotations[rollout.ChangeCauseAnnotation]; !strings.Contains(cause, "sha-1111111 -> "+reg+"api-gateway:sha-2222222") {
		t.Errorf("change-cause = %q", cause)
	}
	// The next run has nothing to do.
	wantOutcome(t, f.run(t, deploy.Options{}), "api-gateway", deploy.OutcomeUpToDate)
}

// Three services, two changed: rolled out one after the other, in config
// order, never below the desired available replicas (maxUnavailable 0).
func TestRunInOrderWithoutDowntime(t *testing.T) {
	e := kubetest.New(t)
	names := []string{"api-gateway", "api-enrichment", "api-generation"}
	var specs []svcSpec
	for _, n := range names {
		specs = append(specs, svcSpec{name: n, image: reg + n + ":sha-1111111", replicas: 3})
	}
	f := newFixture(t, e, fluxsim.V1, specs, "")
	f.refl.Push("api-gateway", reg+"api-gateway:sha-2222222")
	f.refl.Push("api-generation", reg+"api-generation:sha-2222222")

	// Watch every Deployment during the run: availability must never drop.
	ctx, cancel := context.WithCancel(context.Background())
	list, err := e.Kube.AppsV1().Deployments(e.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := e.Kube.AppsV1().Deployments(e.Namespace).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	var minAvail = map[string]int32{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if d, ok := ev.Object.(*appsv1.Deployment); ok && ev.Type == watch.Modified {
				if v, seen := minAvail[d.Name]; !seen || d.Status.AvailableReplicas < v {
					minAvail[d.Name] = d.Status.AvailableReplicas
				}
			}
		}
	}()
	res := f.run(t, deploy.Options{})
	cancel()
	<-done

	wantOutcome(t, res, "api-gateway", deploy.OutcomeDeployed)
	wantOutcome(t, res, "api-enrichment", deploy.OutcomeUpToDate)
	wantOutcome(t, res, "api-generation", deploy.OutcomeDeployed)
	for name, v := range minAvail {
		if v < 3 {
			t.Errorf("%s: available replicas dropped to %d during the run, want >= 3", name, v)
		}
	}
	// Order: the second rollout starts only after the first completed.
	var seq []string
	for _, p := range f.prog {
		if strings.Contains(p, "deploying") || strings.Contains(p, "successfully rolled out") {
			seq = append(seq, strings.SplitN(p, ":", 2)[0]+":"+map[bool]string{true: "start", false: "done"}[strings.Contains(p, "deploying")])
		}
	}
	want := "api-gateway:start api-gateway:done api-generation:start api-generation:done"
	if got := strings.Join(seq, " "); got != want {
		t.Errorf("sequence = %s\nwant       %s", got, want)
	}
}

// A failing image fails fast, is rolled back and remembered, the next run
// skips it, and a newer good image is then deployed.
func TestRunFailingImages(t *testing.T) {
	for _, tag := range []string{"fail-3333333", "crash-3333333"} {
		t.Run(tag, func(t *testing.T) {
			e := kubetest.New(t)
			f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: reg + "api:sha-1111111", replicas: 2}}, "")
			bad := reg + "api:" + tag
			f.refl.Push("api", bad)
			start := time.Now()
			res := f.run(t, deploy.Options{})
			s := wantOutcome(t, res, "api", deploy.OutcomeRolledBack)
			if took := time.Since(start); took > 45*time.Second {
				t.Errorf("failure took %s: not fast (rolloutTimeout is 60s)", took)
			}
			wantReason := map[string]string{"fail-3333333": "ImagePullBackOff", "crash-3333333": "CrashLoopBackOff"}[tag]
			if !strings.Contains(s.Error, wantReason) && !strings.Contains(s.Error, "ErrImagePull") {
				t.Errorf("error = %q, want the pod and %s", s.Error, wantReason)
			}
			if !strings.Contains(s.Error, "pod api-") {
				t.Errorf("error = %q does not name the pod", s.Error)
			}
			d := e.GetDeployment("api")
			if img := kubetest.Image(d); img != reg+"api:sha-1111111" {
				t.Fatalf("after rollback image = %s", img)
			}
			if st := rollout.Evaluate(d); st.State != rollout.Complete || d.Status.AvailableReplicas != 2 {
				t.Fatalf("after rollback: %+v %+v", st, d.Status)
			}
			fi, ok := deploy.ParseFailedImage(d.Annotations)
			if !ok || fi.Image != bad {
				t.Fatalf("failed image not remembered: %v", d.Annotations)
			}
			if _, ok := d.Annotations[deploy.AnnVerified]; ok {
				t.Errorf("verified mark left after rollback: %v", d.Annotations)
			}

			s = wantOutcome(t, f.run(t, deploy.Options{}), "api", deploy.OutcomeSkipped)
			if !strings.Contains(s.Reason, "failed on") {
				t.Errorf("skip reason = %q", s.Reason)
			}
			if img := kubetest.Image(e.GetDeployment("api")); img != reg+"api:sha-1111111" {
				t.Fatalf("second run touched the deployment: %s", img)
			}

			f.refl.Push("api", reg+"api:sha-4444444")
			wantOutcome(t, f.run(t, deploy.Options{}), "api", deploy.OutcomeDeployed)
			if img := kubetest.Image(e.GetDeployment("api")); img != reg+"api:sha-4444444" {
				t.Fatalf("newer good image not deployed: %s", img)
			}
		})
	}
}

// A rollout that never finishes hits the service's timeout, is rolled back,
// and the run goes on with the next service.
func TestRunTimeoutThenNextService(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{
		{name: "slow", image: reg + "slow:sha-1111111", extra: "    rolloutTimeout: 3s\n"},
		{name: "next", image: reg + "next:sha-1111111"},
	}, "")
	f.refl.Push("slow", reg+"slow:unready-2222222")
	f.refl.Push("next", reg+"next:sha-2222222")
	res := f.run(t, deploy.Options{})
	s := wantOutcome(t, res, "slow", deploy.OutcomeRolledBack)
	if !strings.Contains(s.Error, "did not finish within 3s") {
		t.Errorf("error = %q", s.Error)
	}
	wantOutcome(t, res, "next", deploy.OutcomeDeployed)
}

// A reconcile that is never answered is a warning: the run goes on with the
// status Flux has.
func TestRunReconcileTimeoutIsAWarning(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: reg + "api:sha-1111111"}}, "")
	f.cfg.Flux.ReconcileTimeout = 500 * time.Millisecond
	// The policy already points at a new image (an earlier scan), found by
	// the reflector itself: a status written by the test raced the
	// reflector's own evaluation of the new policy on 1.28/kine, which put
	// sha-1111111 back.
	f.refl.Push("api", reg+"api:sha-2222222")
	api := flux.API{Version: "v1"}
	ctx := context.Background()
	for _, o := range flux.Reconcile(ctx, e.Dynamic, api.Repositories(), []flux.Ref{{Namespace: e.Namespace, Name: "api"}}, flux.Token(time.Now())) {
		if !o.OK {
			t.Fatalf("scan before the test: %s", o.Problem)
		}
	}
	kubetest.Eventually(t, 30*time.Second, "the policy selects sha-2222222", func(ctx context.Context) (bool, error) {
		u, err := e.Dynamic.Resource(api.Policies()).Namespace(e.Namespace).Get(ctx, "api", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return flux.ParsePolicy(u).Latest == reg+"api:sha-2222222", nil
	})
	f.refl.Silence("api")
	res := f.run(t, deploy.Options{})
	if len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], "no answer to the reconcile request") {
		t.Fatalf("warnings = %v", res.Warnings)
	}
	if n := f.refl.Requests("imagerepositories", "api"); n != 2 { // the test's, then the run's
		t.Errorf("the run's reconcile annotation was not written (%d requests)", n)
	}
	wantOutcome(t, res, "api", deploy.OutcomeDeployed)
	if !strings.Contains(f.log.String(), `level=WARN msg=reconcile`) {
		t.Errorf("log lacks the reconcile warning:\n%s", f.log.String())
	}
}

// Missing objects are reported; the other services proceed.
func TestRunMissingObjects(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{
		{name: "no-deploy", image: reg + "a:sha-1", noDeploy: true},
		{name: "no-policy", image: reg + "b:sha-1", noPolicy: true},
		{name: "ok", image: reg + "ok:sha-1111111"},
	}, "")
	f.refl.Push("ok", reg+"ok:sha-2222222")
	res := f.run(t, deploy.Options{})
	s := wantOutcome(t, res, "no-deploy", deploy.OutcomeSkipped)
	if !s.Problem || !strings.Contains(s.Reason, "Deployment "+e.Namespace+"/no-deploy not found") {
		t.Errorf("no-deploy: %+v", s)
	}
	s = wantOutcome(t, res, "no-policy", deploy.OutcomeSkipped)
	if !s.Problem || !strings.Contains(s.Reason, "ImagePolicy "+e.Namespace+"/no-policy not found") {
		t.Errorf("no-policy: %+v", s)
	}
	wantOutcome(t, res, "ok", deploy.OutcomeDeployed)
}

// --dry-run changes nothing: no resourceVersion moves, no reconcile request.
func TestRunDryRunChangesNothing(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: reg + "api:sha-1111111"}}, "")
	e.SetPolicyImage(fluxsim.V1, e.Namespace, "api", reg+"api:sha-2222222")
	before := resourceVersions(t, e)
	res := f.run(t, deploy.Options{DryRun: true})
	s := wantOutcome(t, res, "api", deploy.OutcomePlanned)
	if s.Action != deploy.Deploy || s.Target != reg+"api:sha-2222222" {
		t.Errorf("plan = %+v", s.Decision)
	}
	if after := resourceVersions(t, e); after != before {
		t.Errorf("resourceVersions changed:\n%s\n%s", before, after)
	}
	if f.refl.Requests("imagerepositories", "api") != 0 {
		t.Error("dry run asked Flux to reconcile")
	}
}

func resourceVersions(t *testing.T, e *kubetest.Env) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	d := e.GetDeployment("api")
	fmt.Fprintf(&b, "deploy=%s ", d.ResourceVersion)
	for _, res := range []string{"imagepolicies", "imagerepositories"} {
		l, err := e.Dynamic.Resource(fluxsim.V1.GVR(res)).Namespace(e.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range l.Items {
			fmt.Fprintf(&b, "%s/%s=%s ", res, i.GetName(), i.GetResourceVersion())
		}
	}
	return b.String()
}

// A run interrupted while waiting leaves the rollout marked unverified; the
// next run verifies it before anything else.
func TestRunInterruptedThenVerified(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: reg + "api:sha-1111111"}}, "")
	f.refl.Push("api", reg+"api:sha-2222222")
	ctx, cancel := context.WithCancel(context.Background())
	r := f.runner()
	r.Progress = func(svc, msg string) {
		// The first status message comes from the wait, after the patch.
		if strings.HasPrefix(msg, "Waiting for") {
			cancel()
		}
	}
	res, err := r.Run(ctx, "interrupted", deploy.Options{})
	if err != context.Canceled || !res.Cancelled {
		t.Fatalf("Run = %v, cancelled %v; want context.Canceled", err, res.Cancelled)
	}
	wantOutcome(t, res, "api", deploy.OutcomeInterrupted)
	d := e.GetDeployment("api")
	if d.Annotations[deploy.AnnVerified] != "false" || kubetest.Image(d) != reg+"api:sha-2222222" {
		t.Fatalf("after interrupt: image %s, annotations %v", kubetest.Image(d), d.Annotations)
	}
	s := wantOutcome(t, f.run(t, deploy.Options{NoReconcile: true}), "api", deploy.OutcomeVerified)
	if s.Action != deploy.Verify {
		t.Errorf("action = %s", s.Action)
	}
	if e.GetDeployment("api").Annotations[deploy.AnnVerified] != "true" {
		t.Error("not marked verified")
	}
}

// A policy that goes back to an image this Deployment ran and replaced is
// refused (alphabetical order of sha tags is not build order).
func TestRunRefusesDowngrade(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: reg + "api:sha-bbbbbbb"}}, "")
	f.refl.Push("api", reg+"api:sha-fffffff")
	wantOutcome(t, f.run(t, deploy.Options{}), "api", deploy.OutcomeDeployed)
	// A newer build whose hash sorts lower: the policy "moves back".
	e.SetPolicyImage(fluxsim.V1, e.Namespace, "api", reg+"api:sha-bbbbbbb")
	s := wantOutcome(t, f.run(t, deploy.Options{NoReconcile: true}), "api", deploy.OutcomeSkipped)
	if !strings.Contains(s.Reason, "downgrade refused: revision 1") {
		t.Errorf("reason = %q", s.Reason)
	}
}

// Flux 2.6 serves ImagePolicy v1beta2 (no policy reconcile) and v1beta1:
// the run works on such a cluster too. It needs a cluster of its own.
//
// Flux 2.6's policies answer no reconcile request, and the controller
// re-evaluates a policy a moment after its repository's scan (fluxsim plays
// that order): every tag the run's own rescan finds is deployed by that run,
// never one cron period later.
func TestRunOnFlux26(t *testing.T) {
	e := kubetest.Dedicated(t, "2.6")
	f := newFixture(t, e, fluxsim.Flux26, []svcSpec{{name: "api", image: reg + "api:sha-1111111"}}, "")
	var res *deploy.Result
	for i := 2; i <= 5; i++ {
		f.refl.Push("api", fmt.Sprintf("%sapi:sha-%d%d%d%d%d%d%d", reg, i, i, i, i, i, i, i))
		res = f.run(t, deploy.Options{})
		wantOutcome(t, res, "api", deploy.OutcomeDeployed)
	}
	if res.FluxAPI != "v1beta2" {
		t.Errorf("Flux API = %s, want v1beta2", res.FluxAPI)
	}
	if f.refl.Requests("imagepolicies", "api") != 0 {
		t.Error("asked a Flux 2.6 ImagePolicy to reconcile: it would never answer")
	}
	if b, _ := json.Marshal(res); !bytes.Contains(b, []byte(`"fluxImageAPI":"v1beta2"`)) {
		t.Errorf("json: %s", b)
	}
}

// The health check runs after the rollout: the service must answer with the
// new tag (as the seed checked that the API answered the new version); a
// failing check rolls back.
func TestRunHealthCheck(t *testing.T) {
	e := kubetest.New(t)
	// Stands in for the service: answers with the tag its Deployment runs,
	// or fails when the tag says so.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := e.Kube.AppsV1().Deployments(e.Namespace).Get(r.Context(), r.URL.Query().Get("svc"), metav1.GetOptions{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		img := kubetest.Image(d)
		if strings.Contains(img, "sha-bad") {
			http.Error(w, "database unreachable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, `{"version":%q}`, img[strings.LastIndex(img, ":")+1:])
	}))
	defer srv.Close()
	health := func(svc string) string {
		return fmt.Sprintf("    health: {url: %q, expectBody: '\"{{.Tag}}\"', timeout: 1s, interval: 100ms}\n", srv.URL+"/?svc="+svc)
	}
	f := newFixture(t, e, fluxsim.V1, []svcSpec{
		{name: "good", image: reg + "good:sha-1111111", extra: health("good")},
		{name: "bad", image: reg + "bad:sha-1111111", extra: health("bad")},
	}, "")
	f.refl.Push("good", reg+"good:sha-2222222")
	f.refl.Push("bad", reg+"bad:sha-bad2222")
	res := f.run(t, deploy.Options{})
	wantOutcome(t, res, "good", deploy.OutcomeDeployed)
	s := wantOutcome(t, res, "bad", deploy.OutcomeRolledBack)
	if !strings.Contains(s.Error, "health check") || !strings.Contains(s.Error, "status 503") {
		t.Errorf("error = %q", s.Error)
	}
	if img := kubetest.Image(e.GetDeployment("bad")); img != reg+"bad:sha-1111111" {
		t.Errorf("bad not rolled back: %s", img)
	}
	if !strings.Contains(f.log.String(), `msg="health check passed"`) {
		t.Errorf("log lacks the passed health check")
	}
}

// With autoRollback off, a failed rollout is left as it is, remembered, and
// reported.
func TestRunWithoutAutoRollback(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: reg + "api:sha-1111111", extra: "    autoRollback: false\n"}}, "")
	f.refl.Push("api", reg+"api:fail-2222222")
	wantOutcome(t, f.run(t, deploy.Options{}), "api", deploy.OutcomeFailed)
	d := e.GetDeployment("api")
	if img := kubetest.Image(d); img != reg+"api:fail-2222222" {
		t.Fatalf("image = %s: the failed rollout should stay", img)
	}
	if fi, ok := deploy.ParseFailedImage(d.Annotations); !ok || fi.Image != reg+"api:fail-2222222" {
		t.Errorf("failed image not remembered: %v", d.Annotations)
	}
}

// A suspended ImageRepository is not asked to rescan; that is a warning.
func TestRunSuspendedRepository(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: reg + "api:sha-1111111"}}, "")
	patch := []byte(`{"spec":{"suspend":true}}`)
	if _, err := e.Dynamic.Resource(fluxsim.V1.GVR("imagerepositories")).Namespace(e.Namespace).Patch(context.Background(), "api", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	res := f.run(t, deploy.Options{})
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "suspended") {
		t.Fatalf("warnings = %v", res.Warnings)
	}
	if f.refl.Requests("imagerepositories", "api") != 0 {
		t.Error("a suspended repository was asked to reconcile")
	}
	wantOutcome(t, res, "api", deploy.OutcomeUpToDate)
}
